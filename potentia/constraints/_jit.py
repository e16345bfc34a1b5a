"""numba loaded when first used, not at ``import potentia``.

:func:`njit`: numba compiles a kernel at its first call. Importing numba costs ~96 MB of
resident memory (LLVM) and a fraction of a second; a process that never builds an
automaton (a plain LM run, a JSON-only run) should not pay it. The kernels never call one
another, so each can be compiled alone; ``cache=True`` keeps working (numba keys its cache
on the function).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["njit"]

_LOCK = threading.Lock()


def njit(**options: Any) -> Callable[[Callable], Callable]:
    """Like ``numba.njit(**options)``, but numba compiles ``fn`` at its first call.

    Args:
        **options: ``numba.njit`` options (``cache=True``, ...).

    Returns:
        A decorator; the decorated function calls the compiled one (the numba dispatcher
        is its ``dispatcher`` attribute once built).
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(*args: Any) -> Any:
            d = call.dispatcher
            if d is None:
                with _LOCK:
                    if call.dispatcher is None:
                        from numba import njit as numba_njit

                        call.dispatcher = numba_njit(**options)(fn)
                    d = call.dispatcher
            return d(*args)

        call.dispatcher = None
        return call

    return decorate
