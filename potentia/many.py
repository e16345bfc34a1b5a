r"""Many prompts: one independent :func:`potentia.sample` run per prompt, here or on Ray.

``sample_many(model, prompts, constraint, workers=..., seed=..., **kwargs)`` returns one
:class:`~potentia.result.Result` per prompt, in prompt order. Run ``i`` is exactly::

    potentia.sample(model, prompts[i], constraint[i], seed=seeds[i], **kwargs)

with ``seeds = prompt_seeds(seed, len(prompts))``: numpy's ``SeedSequence(seed)`` spawns
one child per prompt, and child ``i`` (which depends only on ``seed`` and ``i``, not on how
many prompts there are) gives the integer seed of run ``i``. Where the runs happen does not
change them: ``workers=None`` runs them one after another in this process; ``workers=k``
(or ``"ray"``: one per CPU of the cluster) runs them on Ray actors, each loading the model
once, and returns bit-identical results.

Why not one batched forward for several prompts: a backend cache covers one prompt and an
SMC run steps its own particles, so batching the LM calls of different runs needs a
multi-prompt cache (padded, attention-masked) in ``lm/`` and a lock-step driver. Padded
batches also change the last bits of the logits, so results would no longer equal the
sequential runs. It would pay (measured on SmolLM2, fp32: 16 rows in one forward cost
160 ms of CPU against 2 x 120 ms for two forwards of 8, at most a third saved; see
docs/many.md), but it is not built: the runs of one worker are sequential, and the
parallelism is the workers'.

Fault tolerance (Ray): prompts travel in chunks; every chunk in flight on a worker that
dies (killed, out of memory, node lost) goes back to the queue and a fresh actor replaces
the dead one. A result is recorded once, by prompt index, so nothing is lost or
duplicated; a chunk that loses ``max_retries + 1`` workers raises ``RuntimeError``.
The scheduler is a small loop on ``ray.wait`` rather than ``ray.util.ActorPool``, whose
``get_next`` raises on a dead actor without saying which task was lost.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from potentia.api import check_hard_weights, sample
from potentia.potentials.base import Potential, Vocabulary
from potentia.result import Result

__all__ = ["sample_many", "prompt_seeds", "ManyResults", "MODEL_NAMES", "load_model"]

#: Model names a loader spec may use: what each worker (or this process) loads.
MODEL_NAMES = ("default", "smollm2")

#: Seconds past ``time_limit`` the driver waits for runs in flight before giving up on them.
GRACE_S = 10.0

_RAY_HINT = "pip install 'potentia[ray]'"

#: ``Result.method`` of a prompt that was never run (no engine made that result).
_NOT_RUN = "sample_many: not run"


class ManyResults(list):
    """The results of :func:`sample_many`: a ``list`` of :class:`Result`, in prompt order.

    Attributes:
        seeds: The integer seed of each run (``pt.sample(..., seed=seeds[i])`` repeats it).
        entropy: The root entropy the seeds were spawned from (``seed``, or fresh entropy
            when ``seed`` was ``None``): ``prompt_seeds(entropy, n) == seeds``.
        workers: Ray actors started (replacements included); 0 for ``workers=None``.
        workers_lost: Actors that died during the call.
        retried: Prompt indices whose runs were started again after a worker died.
        not_run: Prompt indices never run (the ``time_limit`` ran out or Ctrl-C); their
            results have no particles and say why in ``message``.
        wall_time: Seconds for the whole call (model loads included).
    """

    seeds: list[int]
    entropy: int
    workers: int = 0
    workers_lost: int = 0
    retried: list[int]
    not_run: list[int]
    wall_time: float = 0.0


def prompt_seeds(seed: int, n: int) -> list[int]:
    """The integer seed of each of ``n`` runs: child ``i`` of ``numpy.random.SeedSequence(seed)``.

    Child ``i`` is ``SeedSequence(seed, spawn_key=(i,))``; its first 64-bit word is the seed.
    It depends only on ``seed`` and ``i``: the first ``m`` seeds are the same for every
    ``n >= m``.
    """
    children = np.random.SeedSequence(int(seed)).spawn(int(n))
    return [int(c.generate_state(1, dtype=np.uint64)[0]) for c in children]


def load_model(spec: str | os.PathLike | Callable[[], Any]) -> Any:
    """The model a loader spec names (what each Ray worker runs once).

    Args:
        spec: ``"default"`` (``potentia.LM.default()``), ``"smollm2"``
            (``potentia.LM.smollm2()``), a local model folder (``LM.from_pretrained``), or
            a zero-argument callable that returns a model (``functools.partial`` of a
            picklable function, for Ray).
    """
    from potentia.lm import LM

    if callable(spec):
        return spec()
    if spec == "default":
        return LM.default()
    if spec == "smollm2":
        return LM.smollm2()
    return LM.from_pretrained(spec)


def _is_spec(model: Any) -> bool:
    return callable(model) or isinstance(model, str | os.PathLike)


def _check_spec(model: Any, ray: bool) -> None:
    if isinstance(model, str | os.PathLike):
        if str(model) in MODEL_NAMES or Path(model).expanduser().is_dir():
            return
        raise ValueError(
            f"`model` is {str(model)!r}, which is neither a model name {list(MODEL_NAMES)} "
            "nor a local model folder; pass one of those, a zero-argument loader function, "
            "or a model object (workers=None only)."
        )
    if ray and not callable(model):
        raise TypeError(
            f"`model` is a {type(model).__name__} object, which Ray workers cannot share (a "
            f"model is loaded once per worker, not pickled); pass a loader: a name "
            f"{list(MODEL_NAMES)}, a local model folder, or a zero-argument picklable "
            "function such as functools.partial(potentia.models.ToyLM, ngram)."
        )


def _not_run(why: str) -> Result:
    """The result of a prompt that was never run: no particles, ``message`` says why."""
    return Result(
        contexts=[],
        texts=[],
        log_weights=np.zeros(0),
        log_z=-np.inf,
        status=[],
        method=_NOT_RUN,
        message=f"not run: {why}",
        extra={"stopped_by": why},
    )


class _ProbeDone(Exception):
    """Raised by :class:`_Probe` once ``pt.sample`` has checked its arguments."""


class _Probe:
    """A stand-in model: ``pt.sample`` checks every argument, then asks it for a potential.

    That is the first thing it needs a model for, so reaching it means the keyword
    arguments passed ``pt.sample``'s own checks, with no model loaded and no LM call.
    """

    def potential(self, prompt: Any = "") -> Any:
        raise _ProbeDone

    def __getattr__(self, name: str) -> Any:
        if name in ("context_window", "max_length", "prompt_ids"):
            raise AttributeError(name)  # the window is checked per prompt, on the model
        raise _ProbeDone


class _HardStandIn(Potential):
    """Stands in for constraints given as factories (built later, where the runs happen)."""

    hard = True

    def __init__(self) -> None:
        self.vocab = Vocabulary.bytes256()

    def _prefix(self, context: list[int]) -> float:
        return 0.0

    def _complete(self, context: list[int]) -> float:
        return 0.0


def _check_kwargs(kwargs: dict[str, Any], constraint: Potential | None) -> None:
    for name in ("model", "prompt", "constraint", "seed"):
        if name in kwargs:
            raise TypeError(f"`{name}` is an argument of sample_many itself; pass it once.")
    try:
        sample(_Probe(), None, constraint, seed=0, progress=False, **kwargs)
    except _ProbeDone:
        return


def _check_prompts(prompts: Any) -> list:
    if isinstance(prompts, str | bytes) or not isinstance(prompts, Sequence):
        raise TypeError(
            f"`prompts` is {type(prompts).__name__} ({prompts!r:.60}); pass a list of prompts "
            "(one run each), e.g. ['Name a city:', 'Name a river:']."
        )
    prompts = list(prompts)
    if not prompts:
        raise ValueError("`prompts` is empty; pass at least one prompt.")
    for i, p in enumerate(prompts):
        ok = isinstance(p, str) or (
            isinstance(p, list | tuple)
            and all(isinstance(t, int | np.integer) and not isinstance(t, bool) for t in p)
        )
        if not ok:
            raise TypeError(
                f"`prompts[{i}]` is {type(p).__name__} ({p!r:.60}); pass text, or token "
                "indices (a list of ints) for toy models."
            )
    return prompts


def _constraint_specs(constraint: Any, n: int) -> tuple[list, list[int]]:
    """The distinct constraints (or factories) and, per prompt, the index of its own."""
    if isinstance(constraint, list | tuple):
        if len(constraint) != n:
            raise ValueError(
                f"`constraint` is a list of {len(constraint)} constraints but `prompts` has "
                f"{n}; pass one constraint per prompt, or one constraint for all."
            )
        items = list(constraint)
        where = "constraint[{}]"
    else:
        items = [constraint] * n
        where = "constraint"
    specs: list = []
    seen: dict[int, int] = {}
    index = []
    for i, c in enumerate(items):
        name = where.format(i)
        if c is not None and not isinstance(c, Potential) and not callable(c):
            raise TypeError(
                f"`{name}` is {type(c).__name__} ({c!r:.60}); pass a Potential (e.g. "
                "potentia.regex(...)), a zero-argument function that builds one, or None."
            )
        if isinstance(c, Potential):
            check_hard_weights(c, name)
        if id(c) not in seen:
            seen[id(c)] = len(specs)
            specs.append(c)
        index.append(seen[id(c)])
    return specs, index


class _Constraints:
    """Constraints built on first use (factories called once) and lifted to the model once."""

    def __init__(self, specs: list, model: Any) -> None:
        self.specs, self.model = specs, model
        self.built: dict[int, Potential | None] = {}

    def __getitem__(self, k: int) -> Potential | None:
        if k not in self.built:
            c = self.specs[k]
            if callable(c) and not isinstance(c, Potential):
                c = c()
                if c is not None and not isinstance(c, Potential):
                    raise TypeError(
                        f"a `constraint` factory returned {type(c).__name__}; it must return "
                        "a Potential or None."
                    )
                if c is not None:
                    check_hard_weights(c)
            vocab = getattr(self.model, "vocab", None)
            bytes256 = Vocabulary.bytes256()
            if c is not None and vocab is not None and c.vocab == bytes256 and vocab != bytes256:
                c = c.lift(vocab)  # what pt.sample does per call, done once per worker
            self.built[k] = c
        return self.built[k]


def _run_one(
    model: Any, prompt: Any, constraint: Any, seed: int, kwargs: dict, deadline: float | None
) -> Result:
    """``pt.sample`` for one prompt, its ``time_limit`` what is left of the call's budget."""
    time_limit = None
    if deadline is not None:
        time_limit = deadline - time.time()
        if time_limit <= 0:
            return _not_run("the `time_limit` of sample_many ran out before this prompt started")
    return sample(
        model, prompt, constraint, seed=seed, time_limit=time_limit, progress=False, **kwargs
    )


class _Worker:
    """A Ray actor's body: loads the model once, then runs chunks of prompts."""

    def __init__(self, spec: Any, threads: int | None) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.model = load_model(spec)
        self.constraints: dict[str, _Constraints] = {}

    def ping(self) -> bool:
        """Answers once the model is loaded (the driver sends work only then)."""
        return True

    def run(self, call: str, specs: list, chunk: list, kwargs: dict, deadline: float | None):
        """``[(i, Result)]`` for the chunk's ``(i, prompt, constraint index, seed)``."""
        cons = self.constraints.get(call)
        if cons is None:
            self.constraints = {call: _Constraints(specs, self.model)}  # one call at a time
            cons = self.constraints[call]
        return [(i, _run_one(self.model, p, cons[k], s, kwargs, deadline)) for i, p, k, s in chunk]


def _progress(progress: bool | None, total: int):
    if progress is False or (progress is None and "PYTEST_CURRENT_TEST" in os.environ):
        return None  # off in tests unless asked for explicitly, like pt.sample's
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc="sample_many", unit="prompt", delay=0 if progress else 2.0, leave=False
    )


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"sample_many(workers=...) runs on Ray, which is not installed: {_RAY_HINT} "
            "(or pass workers=None to run the prompts here, one after another)."
        ) from e
    return ray


def _picklable(obj: Any, name: str) -> None:
    from ray import cloudpickle

    try:
        cloudpickle.dumps(obj)
    except Exception as e:  # noqa: BLE001 - any pickling failure is the same advice
        raise TypeError(
            f"`{name}` cannot be sent to a Ray worker ({type(e).__name__}: {e}); pass a "
            "zero-argument function that builds it on the worker instead, e.g. "
            "functools.partial(potentia.regex, r'...')."
        ) from e


def sample_many(
    model: Any,
    prompts: Sequence[Any],
    constraint: Any = None,
    *,
    workers: int | str | None = None,
    seed: int | None = 0,
    time_limit: float | None = None,
    progress: bool | None = None,
    address: str | None = None,
    max_retries: int = 3,
    chunk_size: int | None = None,
    worker_options: dict[str, Any] | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    **kwargs: Any,
) -> ManyResults:
    """One independent :func:`potentia.sample` run per prompt, in this process or on Ray.

    Result ``i`` equals ``pt.sample(model, prompts[i], constraint_i, seed=out.seeds[i],
    **kwargs)`` (with ``out.seeds == prompt_seeds(seed, len(prompts))``) wherever it ran,
    unless ``time_limit`` stopped it.

    Args:
        model: A model object (``workers=None`` only), or a loader: ``"default"``,
            ``"smollm2"``, a local model folder, or a zero-argument picklable function
            returning the model. Each Ray worker loads it once; models are never pickled.
        prompts: The prompts, one run each (text, or token indices for toy models).
        constraint: One constraint for every prompt, or a list with one per prompt (each
            a :class:`Potential`, ``None``, or a zero-argument function building one where
            the run happens: needed on Ray for constraints that cannot be pickled, such
            as ``potentia.regex``; ``functools.partial(pt.regex, pattern)`` does).
        workers: ``None``: run here, one prompt after another. An int ``k >= 1``: ``k``
            Ray actors. ``"ray"``: one actor per CPU of the Ray cluster (divided by
            ``worker_options["num_cpus"]``).
        seed: Root seed of the per-prompt seeds (:func:`prompt_seeds`); ``None`` draws
            fresh entropy, kept in ``ManyResults.entropy``.
        time_limit: Wall-clock budget of the *whole call* in seconds (``None``: none).
            Each run gets what is left as its own ``time_limit``; prompts not started
            when it runs out get a result with no particles whose ``message`` says so.
        progress: One bar over the prompts: ``True``, ``False`` or ``None`` (shown only
            when the call runs over 2 s). The runs themselves show none.
        address: The Ray cluster to connect to (``ray.init(address=...)``), e.g.
            ``"auto"`` or ``"ray://<head>:10001"``; ``None`` starts a local Ray (or uses
            the one this process already joined). Only with ``workers``.
        max_retries: How many times the prompts of a worker that died are started again
            on a fresh actor before ``sample_many`` gives up.
        chunk_size: Prompts per Ray task (``None``: about 8 chunks per worker, at most 64
            prompts each).
        worker_options: Options of each actor (``ray.remote`` options such as
            ``{"num_cpus": 2, "num_gpus": 1}``; default ``{"num_cpus": 1}``), plus
            ``"threads"``: torch threads per actor (default: ``num_cpus``).
        on_result: Called on this process as ``on_result(i, result)`` when run ``i``
            arrives (in completion order), e.g. to write results out as they come.
        **kwargs: Any other keyword argument of :func:`potentia.sample` (``particles``,
            ``max_tokens``, ``method``, ``sampler``, ``max_lm_calls``, ...), the same for
            every run.

    Returns:
        A :class:`ManyResults` (a list of :class:`Result` in prompt order, with the seeds
        and what happened to the workers).

    Raises:
        TypeError, ValueError: for bad arguments, before any model load or LM call.
        ImportError: if ``workers`` is set and Ray is not installed (``pip install
            'potentia[ray]'``).
        RuntimeError: if a chunk of prompts lost more than ``max_retries`` workers.
    """
    t0 = time.perf_counter()
    prompts = _check_prompts(prompts)
    n = len(prompts)
    ray_mode = workers is not None
    if ray_mode and not (
        workers == "ray"
        or (
            isinstance(workers, int | np.integer) and not isinstance(workers, bool) and workers >= 1
        )
    ):
        raise ValueError(
            f"`workers` is {workers!r}; pass None (run here), an int >= 1 (Ray actors) or "
            "'ray' (one actor per CPU of the Ray cluster)."
        )
    if address is not None and not ray_mode:
        raise ValueError(
            "`address` names a Ray cluster but `workers` is None; pass workers=<int> or "
            "workers='ray' to run on it."
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise TypeError(f"`seed` is {seed!r}; pass an int (the root of the per-prompt seeds).")
    if seed is not None and seed < 0:
        raise ValueError(f"`seed` is {seed}; pass an int >= 0 (numpy SeedSequence entropy).")
    for name, v in (("max_retries", max_retries), ("chunk_size", chunk_size)):
        if v is None and name == "chunk_size":
            continue
        low = 0 if name == "max_retries" else 1
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
            raise ValueError(f"`{name}` is {v!r}; pass an int >= {low}.")
    if on_result is not None and not callable(on_result):
        raise TypeError(f"`on_result` is {on_result!r}; pass a function (i, result) or None.")
    opts = dict(worker_options or {})
    threads = opts.pop("threads", None)
    opts.setdefault("num_cpus", 1)
    if threads is None and isinstance(opts["num_cpus"], int) and opts["num_cpus"] >= 1:
        threads = opts["num_cpus"]
    specs, cindex = _constraint_specs(constraint, n)
    probe_c = next((c for c in specs if isinstance(c, Potential)), None)
    if probe_c is None and any(c is not None for c in specs):
        probe_c = _HardStandIn()  # only factories: their kind is known once they are built
    _check_kwargs({"time_limit": time_limit, **kwargs}, probe_c)
    if _is_spec(model):
        _check_spec(model, ray_mode)
    elif ray_mode:
        _check_spec(model, True)
    entropy = int(seed) if seed is not None else int(np.random.SeedSequence().entropy)
    seeds = prompt_seeds(entropy, n)
    deadline = None if time_limit is None else time.time() + float(time_limit)

    out = ManyResults([None] * n)
    out.seeds, out.entropy, out.retried, out.not_run = seeds, entropy, [], []
    bar = _progress(progress, n)

    def record(i: int, r: Result) -> None:
        if out[i] is not None:  # cannot happen: every index is recorded once
            raise RuntimeError(f"sample_many: result {i} arrived twice; please report this.")
        out[i] = r
        if bar is not None:
            bar.update(1)
        if on_result is not None:
            on_result(i, r)

    try:
        if not ray_mode:
            _run_here(model, prompts, specs, cindex, seeds, kwargs, deadline, record)
        else:
            _run_ray(
                model, prompts, specs, cindex, seeds, kwargs, deadline, record, out,
                workers=workers, address=address, max_retries=int(max_retries),
                chunk_size=chunk_size, opts=opts, threads=threads,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    why = (
        "the `time_limit` of sample_many ran out before this prompt started"
        if deadline is not None and time.time() >= deadline
        else "sample_many was interrupted (KeyboardInterrupt) before this prompt started"
    )
    for i in range(n):
        if out[i] is None:
            out[i] = _not_run(why)
    out.not_run = [i for i, r in enumerate(out) if r.method == _NOT_RUN]
    out.wall_time = time.perf_counter() - t0
    return out


def _run_here(model, prompts, specs, cindex, seeds, kwargs, deadline, record) -> None:
    """Every prompt in this process, in order; Ctrl-C stops after the run it interrupts."""
    if _is_spec(model):
        model = load_model(model)
    cons = _Constraints(specs, model)
    try:
        for i, p in enumerate(prompts):
            if deadline is not None and time.time() >= deadline:
                return
            r = _run_one(model, p, cons[cindex[i]], seeds[i], kwargs, deadline)
            record(i, r)
            if str(r.extra.get("stopped_by", "")).startswith("interrupted"):
                return
    except KeyboardInterrupt:  # between two runs (a run returns its partial result itself)
        return


def _run_ray(
    model, prompts, specs, cindex, seeds, kwargs, deadline, record, out, *,
    workers, address, max_retries, chunk_size, opts, threads,
) -> None:  # fmt: skip
    """The prompts in chunks over Ray actors; chunks of a dead actor go to a fresh one."""
    ray = _import_ray()
    from ray.exceptions import RayActorError, RayTaskError

    _picklable(model, "model")
    for k, c in enumerate(specs):
        if c is not None:
            where = (
                "constraint"
                if len(specs) == 1
                else f"constraint (the one of prompt {cindex.index(k)})"
            )
            _picklable(c, where)
    for name, v in kwargs.items():
        _picklable(v, name)
    if not ray.is_initialized():
        ray.init(address=address)
    have = ray.cluster_resources()
    for res, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
        need = float(opts.get(key) or 0)
        if need > float(have.get(res, 0.0)):
            raise ValueError(
                f"`worker_options` asks {key}={need:g} per worker but the Ray cluster has "
                f"{have.get(res, 0):g} {res}s: no worker could start; lower it or add nodes."
            )
    if workers == "ray":
        per = float(opts.get("num_cpus") or 1)
        workers = max(1, int(float(have.get("CPU", 1.0)) // per)) if per > 0 else 1
    n = len(prompts)
    n_workers = min(int(workers), n)
    size = chunk_size or max(1, min(64, math.ceil(n / (8 * n_workers))))
    chunks = [
        [(i, prompts[i], cindex[i], seeds[i]) for i in range(a, min(a + size, n))]
        for a in range(0, n, size)
    ]
    call = uuid.uuid4().hex[:12]
    remote = ray.remote(**opts)(_Worker)
    names = itertools.count()
    specs_ref, kwargs_ref = ray.put(specs), ray.put(kwargs)  # sent once, read by every task
    actors: list[Any] = [None] * n_workers
    gen = [0] * n_workers  # bumped when a slot's actor is replaced
    ready = [False] * n_workers  # a slot gets work once its actor has loaded the model
    pings: dict[Any, tuple[int, int]] = {}  # ready-ref -> (slot, generation)
    inflight: dict[Any, tuple[int, int, int]] = {}  # task ref -> (slot, generation, chunk)
    queue = deque(range(len(chunks)))
    attempts = [0] * len(chunks)
    per_actor = 2  # one chunk running, one queued: no idle gap between chunks

    def start(slot: int) -> None:
        out.workers += 1
        a = remote.options(name=f"potentia-sample_many-{call}-{next(names)}").remote(model, threads)
        actors[slot], ready[slot] = a, False
        pings[a.ping.remote()] = (slot, gen[slot])

    def lost(slot: int, g: int, e: Exception) -> None:
        """The actor of ``slot`` died: replace it (once, whichever of its refs tells first)."""
        if e.actor_init_failed:  # the loader raised: every fresh actor would too
            raise RuntimeError(f"a Ray worker could not load `model` ({model!r:.80}): {e}") from e
        if g != gen[slot]:
            return
        out.workers_lost += 1
        if out.workers_lost > max_retries * n_workers + max_retries:
            raise RuntimeError(
                f"{out.workers_lost} Ray workers died ({type(e).__name__}); raise "
                f"`max_retries` (now {max_retries}) or look for what kills them (memory?)."
            ) from e
        ray.kill(actors[slot], no_restart=True)
        gen[slot] += 1
        start(slot)

    try:
        for slot in range(n_workers):
            start(slot)
        while inflight or (queue and (deadline is None or time.time() < deadline)):
            if deadline is not None and time.time() > deadline + GRACE_S:
                return  # runs still out are given up; the caller marks them not run
            for slot in range(n_workers):
                if not ready[slot] or (deadline is not None and time.time() >= deadline):
                    continue
                load = sum(1 for s, g, _ in inflight.values() if s == slot and g == gen[slot])
                for _ in range(per_actor - load):
                    if not queue:
                        break
                    c = queue.popleft()
                    ref = actors[slot].run.remote(call, specs_ref, chunks[c], kwargs_ref, deadline)
                    inflight[ref] = (slot, gen[slot], c)
            done_refs, _ = ray.wait([*inflight, *pings], num_returns=1, timeout=0.5)
            for ref in done_refs:
                if ref in pings:
                    slot, g = pings.pop(ref)
                    try:
                        ray.get(ref)
                    except RayActorError as e:
                        lost(slot, g, e)
                    else:
                        ready[slot] = ready[slot] or g == gen[slot]
                    continue
                slot, g, c = inflight.pop(ref)
                try:
                    done = ray.get(ref)
                except RayActorError as e:
                    attempts[c] += 1
                    if attempts[c] > max_retries:
                        first, last = chunks[c][0][0], chunks[c][-1][0]
                        raise RuntimeError(
                            f"prompts {first}..{last} lost {attempts[c]} Ray workers (the last: "
                            f"{type(e).__name__}); raise `max_retries` (now {max_retries}) or "
                            "look for what kills the workers (memory?)."
                        ) from e
                    queue.appendleft(c)  # the next ready actor takes it
                    out.retried.extend(i for i, *_ in chunks[c])
                    lost(slot, g, e)
                    continue
                except RayTaskError as e:  # the run itself raised: not the worker's fault
                    raise e.as_instanceof_cause() from None
                for i, r in done:
                    record(i, r)
    except KeyboardInterrupt:
        return
    finally:
        for a in actors:
            if a is not None:
                ray.kill(a, no_restart=True)
        out.retried.sort()
