"""The front door: ``potentia.sample(model, prompt, constraint, method=..., ...)``.

Later subsystems register their samplers and engines here (AWRS, ASAp, A*); the front
door checks every argument before any LM call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from potentia.asap import asap
from potentia.potentials.base import Potential, Vocabulary, as_potential
from potentia.result import Result
from potentia.samplers.awrs import AWRS
from potentia.samplers.base import TokenSampler
from potentia.samplers.direct import DirectSampler
from potentia.smc.engine import smc, validate_run_args
from potentia.smc.resampling import get_scheme

__all__ = ["sample", "register_sampler", "register_method", "SAMPLERS", "METHODS"]

#: Token samplers by name: ``factory(lm_potential, constraint_or_None) -> TokenSampler``.
SAMPLERS: dict[str, Callable[[Potential, Potential | None], TokenSampler]] = {}


def register_sampler(
    name: str, factory: Callable[[Potential, Potential | None], TokenSampler]
) -> None:
    """Make a token sampler available as ``sample(..., sampler=name)``."""
    SAMPLERS[name] = factory


def _direct(lm: Potential, constraint: Potential | None) -> TokenSampler:
    return DirectSampler(lm if constraint is None else lm * constraint)


def _awrs(lm: Potential, constraint: Potential | None) -> TokenSampler:
    """AWRS for a hard constraint, direct sampling without one."""
    return DirectSampler(lm) if constraint is None else AWRS(lm, constraint)


register_sampler("direct", _direct)
register_sampler("awrs", _awrs)

#: Whole-string engines other than SMC, by name:
#: ``run(model, prompt, constraint, n=..., max_tokens=..., seed=...) -> Result``.
METHODS: dict[str, Callable[..., Result]] = {}


def register_method(name: str, run: Callable[..., Result]) -> None:
    """Make an engine available as ``sample(..., method=name)``."""
    METHODS[name] = run


def _trie_method(cls_name: str) -> Callable[..., Result]:
    def run(model: Any, prompt: Any, constraint: Potential, *, n: int, max_tokens: int, seed):
        cls = getattr(asap, cls_name)
        return cls.from_model(model, prompt, constraint, max_tokens=max_tokens).sample(n, seed)

    run.__doc__ = f"``{cls_name}`` on a fresh θ trie: ``n`` equally weighted strings."
    return run


for _name, _cls in (("asap", "ASAp"), ("cars", "CARS"), ("lcd", "LCD")):
    register_method(_name, _trie_method(_cls))


def _lm_potential(model: Any, prompt: Any) -> Potential:
    if isinstance(model, Potential):
        if prompt not in (None, "", (), []):
            raise ValueError(
                "`model` is a Potential, which cannot be conditioned on `prompt`; pass the "
                "model object (e.g. potentia.LM.default()) or prompt=None."
            )
        return model
    if not hasattr(model, "potential"):
        raise TypeError(
            f"`model` is {type(model).__name__}; pass a model such as potentia.LM.default(), "
            "a ToyLM, or a Potential."
        )
    return model.potential(prompt if prompt is not None else "")


def _coerce_constraint(constraint: Any, vocab: Vocabulary) -> Potential | None:
    if constraint is None:
        return None
    c = as_potential(constraint, "constraint")
    if c.vocab != vocab and c.vocab == Vocabulary.bytes256() and vocab != c.vocab:
        c = c.lift(vocab)
    return c


def sample(
    model: Any,
    prompt: Any = None,
    constraint: Potential | None = None,
    *,
    method: str = "smc",
    sampler: str = "auto",
    particles: int = 16,
    max_tokens: int = 32,
    seed: int | np.random.Generator | None = 0,
    ess_threshold: float = 0.5,
    resampling: str = "multinomial",
    critic: Potential | None = None,
    twist: Potential | None = None,
    on_max_tokens: str = "force_eos",
    progress: bool | None = None,
) -> Result:
    """Draw properly weighted samples of ``LM(· | prompt) × constraint``.

    Args:
        model: A model object with ``.potential(prompt)`` (``potentia.LM``, ``ToyLM``), or
            a :class:`Potential` used as the LM (then ``prompt`` must be empty).
        prompt: The prompt (text, or token indices for toy models).
        constraint: A potential over the model's vocabulary, or a byte-level potential
            (lifted automatically); ``None`` samples the LM itself.
        method: ``"smc"`` (sequential Monte Carlo), or a whole-string engine on a fresh θ
            trie: ``"asap"`` (grammar-aligned sampling), ``"cars"`` (exact rejection),
            ``"lcd"`` (locally constrained decoding, biased: a baseline). Those return
            ``particles`` equally weighted strings and need a hard ``constraint``; to keep
            a trie learning across calls use :mod:`potentia.asap.asap` directly.
        sampler: The token sampler: ``"direct"``, or ``"auto"`` (the best available:
            AWRS for hard constraints when installed, else direct), or any registered name.
        particles: Number of particles.
        max_tokens: Largest number of generated tokens.
        seed: Seed or ``numpy.random.Generator``.
        ess_threshold: Resample when ESS < threshold · particles.
        resampling: ``"multinomial"``, ``"stratified"``, ``"systematic"`` or ``"residual"``.
        critic: Extra potential multiplied into the target, applied token by token.
        twist: Potential used only to guide resampling (divided out at EOS).
        on_max_tokens: ``"force_eos"`` or ``"truncate"``.
        progress: Progress bar: ``True``, ``False`` or ``None`` (only for runs over 2 s).

    Returns:
        A :class:`Result` with the weighted particles, ``posterior`` and ``log_z``.
    """
    validate_run_args(particles, max_tokens, ess_threshold, on_max_tokens)
    get_scheme(resampling)
    if method != "smc" and method not in METHODS:
        raise ValueError(f"`method` is {method!r}; available: {['smc', *sorted(METHODS)]}.")
    if method != "smc" and (constraint is None or not getattr(constraint, "hard", False)):
        raise ValueError(
            f"`method={method!r}` needs a hard `constraint` (weights in {{0, 1}}), got "
            f"{constraint!r}; use method='smc' for soft potentials or no constraint."
        )
    if sampler != "auto" and sampler not in SAMPLERS:
        raise ValueError(f"`sampler` is {sampler!r}; choose 'auto' or one of {sorted(SAMPLERS)}.")
    if seed is not None and not isinstance(seed, int | np.integer | np.random.Generator):
        raise TypeError(f"`seed` is {seed!r}; pass an int or a numpy.random.Generator.")
    if method != "smc":
        if not hasattr(model, "potential"):
            raise TypeError(f"`model` is {type(model).__name__}; method={method!r} needs a model.")
        return METHODS[method](
            model, prompt, constraint, n=particles, max_tokens=max_tokens, seed=seed
        )
    lm = _lm_potential(model, prompt)
    c = _coerce_constraint(constraint, lm.vocab)
    if sampler == "auto":
        sampler = "awrs" if (c is not None and c.hard and "awrs" in SAMPLERS) else "direct"
    token_sampler = SAMPLERS[sampler](lm, c)
    return smc(
        token_sampler,
        n_particles=particles,
        max_tokens=max_tokens,
        rng=seed,
        ess_threshold=ess_threshold,
        resampling=resampling,
        critic=critic,
        twist=twist,
        on_max_tokens=on_max_tokens,
        progress=progress,
    )
