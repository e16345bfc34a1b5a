"""The front door: ``potentia.sample(model, prompt, constraint, method=..., ...)``.

Later subsystems register their samplers and engines here (AWRS, ASAp, A*); the front
door checks every argument before any LM call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from potentia.asap import asap
from potentia.asap.trie import coerce_constraint
from potentia.constraints.completion import BudgetGuard, CompletionTwist, CompletionTwistState
from potentia.constraints.json_schema import JSONSchema
from potentia.constraints.llg import LLGConstraint
from potentia.potentials.base import Potential, Vocabulary, as_potential
from potentia.potentials.ops import (
    AutoStop,
    Product,
    StopAt,
    Truncate,
    check_stop,
    check_truncation,
    cut_at_stop,
)
from potentia.result import Result
from potentia.samplers.awrs import AWRS
from potentia.samplers.base import TokenSampler
from potentia.samplers.direct import DirectSampler
from potentia.samplers.units import as_boundary
from potentia.search import Budget, astar, beam_search, best_of_n, deal, unit_smc
from potentia.smc.engine import (
    Particles,
    run_message,
    smc,
    validate_budgets,
    validate_run_args,
)
from potentia.smc.resampling import get_scheme

__all__ = [
    "sample",
    "register_sampler",
    "register_method",
    "SAMPLERS",
    "METHODS",
    "TRIE_LM_CALLS_PER_TOKEN",
    "check_hard_weights",
    "SEARCH_METHODS",
]

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

#: Whole-string engines other than SMC, by name: ``run(model, prompt, constraint, n=...,
#: max_tokens=..., seed=..., max_attempts=..., max_lm_calls=..., time_limit=...,
#: progress=...) -> Result`` (a budget of ``None`` means no limit).
METHODS: dict[str, Callable[..., Result]] = {}

#: Default LM-call budget of the trie methods, per particle and generated token: ``pt.sample``
#: with ``method="asap"|"cars"|"lcd"`` and ``max_lm_calls=None`` stops after
#: ``TRIE_LM_CALLS_PER_TOKEN · particles · max_tokens`` LM calls (node expansions, one LM
#: row each), i.e. the LM rows an SMC run of the same size computes at most.
TRIE_LM_CALLS_PER_TOKEN = 1


def register_method(name: str, run: Callable[..., Result]) -> None:
    """Make an engine available as ``sample(..., method=name)``."""
    METHODS[name] = run


def _trie_method(cls_name: str) -> Callable[..., Result]:
    def run(
        model: Any,
        prompt: Any,
        constraint: Potential,
        *,
        n: int,
        max_tokens: int,
        seed,
        max_attempts: int | None = None,
        max_lm_calls: int | None = None,
        time_limit: float | None = None,
        progress: bool | None = None,
        stop: tuple[bytes, ...] = (),
    ):
        cls = getattr(asap, cls_name)
        lm = _lm_potential(model, prompt)
        prefill(lm, progress)
        c = coerce_constraint(lm, constraint)
        if stop:
            lm = StopAt(lm, stop)  # locally normalised: θ stays an upper bound
        if getattr(c, "ends_itself", False):
            lm = AutoStop(lm, c)  # the same target as SMC's (see docs/dsl.md)
        return cls(lm, c, max_tokens=max_tokens).sample(
            n,
            seed,
            max_attempts=max_attempts,
            max_lm_calls=max_lm_calls,
            time_limit=time_limit,
            progress=progress,
        )

    run.__doc__ = (
        f"``{cls_name}`` on a fresh θ trie: ``n`` equally weighted strings (the LM wrapped "
        "in StopAt for stop strings and AutoStop for a constraint that ends itself)."
    )
    return run


for _name, _cls in (("asap", "ASAp"), ("cars", "CARS"), ("lcd", "LCD")):
    register_method(_name, _trie_method(_cls))


def _check_context_window(model: Any, prompt: Any, max_tokens: int) -> None:
    """Prompt tokens + ``max_tokens`` must fit the model's context (tokenizing only)."""
    window = getattr(model, "context_window", None) or getattr(model, "max_length", None)
    if not isinstance(prompt, str | list) or not isinstance(window, int) or window <= 0:
        return
    fix = model.window_fix() if hasattr(model, "window_fix") else ""
    if max_tokens >= window:
        raise ValueError(
            f"`max_tokens` is {max_tokens} but the model's context window holds {window} "
            f"tokens; pass max_tokens < {window} (prompt included){fix}."
        )
    if not hasattr(model, "prompt_ids"):
        return
    n = len(model.prompt_ids(prompt))
    if n + max_tokens > window:
        raise ValueError(
            f"`prompt` has {n} tokens and `max_tokens` is {max_tokens}, together more than "
            f"the model's context window of {window} tokens; shorten the prompt or pass "
            f"max_tokens <= {max(window - n, 0)}{fix}."
        )


#: Prompts of more tokens than this are prefilled in chunks with a progress bar (when
#: ``progress`` is not ``False``); shorter ones in one forward.
PREFILL_PROGRESS_TOKENS = 2048
#: Tokens per forward of a chunked prefill.
PREFILL_CHUNK = 512


def prefill(lm: Potential, progress: bool | None = None) -> bool:
    """Prefill a long prompt of a ``potentia.LM`` potential in chunks, with a progress bar.

    Does nothing (returns ``False``) for a potential that is not a transformer LM's, one
    already prefilled, a prompt of at most :data:`PREFILL_PROGRESS_TOKENS` tokens, or
    ``progress=False``. Otherwise runs the prompt ``PREFILL_CHUNK`` tokens per forward,
    each continuing the cache of the chunks before (the same scores as one forward, up to
    float rounding), shows a bar (``None``: after 2 s, never under pytest), and stores the
    cache where the potential's own lazy prefill would have (so it is not run again).

    Returns:
        Whether the chunked prefill ran.
    """
    ids = getattr(lm, "prompt_ids", None)
    backend = getattr(getattr(lm, "lm", None), "backend", None)
    if (
        progress is False
        or ids is None
        or backend is None
        or not hasattr(backend, "extend")
        or getattr(lm, "_prompt", True) is not None
        or len(ids) <= PREFILL_PROGRESS_TOKENS
    ):
        return False
    bar = None
    if not (progress is None and "PYTEST_CURRENT_TEST" in os.environ):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(ids), desc="prefill", unit="tok", delay=0 if progress else 2.0, leave=False
        )
    cache, scores = None, None
    try:
        for i in range(0, len(ids), PREFILL_CHUNK):
            chunk = np.asarray([ids[i : i + PREFILL_CHUNK]], dtype=np.int64)
            scores, cache = backend.extend(cache, None, chunk)
            if bar is not None:
                bar.update(chunk.shape[1])
    finally:
        if bar is not None:
            bar.close()
    if hasattr(backend, "_check_prompt_cache"):
        backend._check_prompt_cache(cache)
    lm._prompt = (cache, scores[0, -1])
    return True


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


def check_hard_weights(c: Potential, arg: str = "constraint") -> None:
    """A hard potential's weights of the empty string must be 0 or -inf (no LM call).

    Raises:
        ValueError: naming ``arg`` if ``prefix([])`` or ``complete([])`` is another value.
    """
    if not getattr(c, "hard", False):
        return
    for what in ("prefix", "complete"):
        try:
            v = float(getattr(c, what)([]))
        except ValueError as e:  # NaN and other refused log weights
            raise ValueError(f"`{arg}` ({c!r:.80}): {e}") from e
        if not (v == 0.0 or v == -np.inf):
            raise ValueError(
                f"`{arg}` ({c!r:.80}) is declared hard (weights in {{0, 1}}) but its "
                f"{what}([]) is {v!r} in log space; return 0.0 (allowed) or -inf (rejected), "
                "or set `hard = False` to use it as a soft potential with method='smc'."
            )


def value_parser(constraint: Any) -> Callable[[str], Any] | None:
    """How :attr:`Result.values` reads a text under ``constraint``, or ``None``.

    A JSON constraint (``pt.json``, alone or a factor of a product) reads texts with
    ``json.loads``; one built from a Pydantic model with ``model.model_validate_json``
    (validated instances).
    """
    parts = constraint.parts if isinstance(constraint, Product) else [constraint]
    for p in parts:
        if isinstance(p, JSONSchema):
            return p.model.model_validate_json if p.model is not None else json.loads
    return None


def _finish(out: Result, constraint: Any, stops: tuple[bytes, ...]) -> Result:
    """Cut texts after the first stop string and attach the values' parser."""
    if stops:
        out = replace(out, texts=[cut_at_stop(t, stops) for t in out.texts])
        out.extra = {**out.extra, "stop": [b.decode("utf-8", "replace") for b in stops]}
    parser = value_parser(constraint) if constraint is not None else None
    if parser is not None:
        out.parser = parser
    return out


def _coerce_constraint(constraint: Any, vocab: Vocabulary) -> Potential | None:
    if constraint is None:
        return None
    c = as_potential(constraint, "constraint")
    check_hard_weights(c)
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
    resampling: str = "auto",
    critic: Potential | None = None,
    twist: Potential | None = None,
    on_max_tokens: str = "force_eos",
    progress: bool | None = None,
    time_limit: float | None = None,
    max_lm_calls: int | None = None,
    max_attempts: int | None = None,
    temperature: float = 1.0,
    unit: object = None,
    chat: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: str | list[str] | None = None,
    budget_guard: bool = True,
) -> Result:
    r"""Draw properly weighted samples of ``LM(· | prompt) × constraint``.

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
            a trie learning across calls use :mod:`potentia.asap.asap` directly. Or a
            search for high-weight strings of ``LM × constraint`` (a hard, a soft or no
            constraint): ``"astar"``, ``"beam"``, ``"deal"``, ``"bon"`` (best-of-N); see
            ``docs/search.md``.
        sampler: The token sampler: ``"direct"``, or ``"auto"`` (the best available:
            AWRS for hard constraints when installed, else direct), or any registered name.
        particles: Number of particles.
        max_tokens: Largest number of generated tokens (prompt + ``max_tokens`` must fit
            the model's context window).
        seed: Seed or ``numpy.random.Generator``.
        ess_threshold: Resample when ESS < threshold · particles.
        resampling: ``"multinomial"``, ``"stratified"``, ``"systematic"``, ``"residual"``,
            or ``"auto"``: residual under the budget guard (a structured constraint, see
            ``budget_guard``), multinomial otherwise. Residual resampling keeps
            ``floor(N·w_i)`` copies of each particle deterministically, so with 4 particles
            it keeps more distinct lineages (docs/smc.md, "Defaults for structured output").
        critic: Extra potential multiplied into the target, applied token by token.
        twist: Potential used only to guide resampling (divided out at EOS).
        on_max_tokens: ``"force_eos"`` or ``"truncate"``.
        progress: Progress bar: ``True``, ``False`` or ``None`` (only for runs over 2 s).
        time_limit: Wall-clock budget in seconds (``None``: none).
        max_lm_calls: Budget of LM calls: SMC steps (one batched call each) or trie node
            expansions. ``None``: none for SMC (``max_tokens`` bounds it), and
            ``TRIE_LM_CALLS_PER_TOKEN · particles · max_tokens`` for the trie methods.
        max_attempts: Budget of walks for ``method="asap"|"cars"|"lcd"`` (``None``: none).
        temperature: A declared change of the *target* (SMC only): ``T`` ≠ 1 samples
            ``LM(x)^(1/T) · constraint(x)`` (the LM potential raised to ``1/T`` with
            :class:`~potentia.potentials.ops.Power`), and the weights stay proper for
            that target. This tempers whole strings; it is not per-token temperature
            sampling (softmax(logits / T) renormalised at each step), whose distribution
            over strings differs.
        top_k: Keep the ``top_k`` most probable next tokens of the LM at every step
            (renormalised): a *declared target change* (the LM a top-k sampler samples
            from, :class:`~potentia.potentials.ops.Truncate`), sampled exactly together
            with the constraint. SMC only.
        top_p: Keep the smallest set of most probable next tokens with mass ≥ ``top_p``
            (nucleus), renormalised; a declared target change like ``top_k``. SMC only.
        chat: Render ``prompt`` as one user turn with the tokenizer's chat template (and
            the generation prompt); a ``prompt`` that is a list of ``{"role", "content"}``
            messages is always rendered so.
        unit: SMC only: resample only at step-unit boundaries
            (:func:`potentia.search.unit_smc`): a delimiter such as ``"\n"``, a token
            count ``k``, or a :class:`~potentia.samplers.units.Boundary`. The target is
            the same as token-level SMC's; only the resampling schedule changes.
            ``None`` (default): token-level SMC.
        stop: Stop strings (a string or a list): the LM stops at the token where its
            generated bytes first contain one of them (across token boundaries), as a
            decoder with stop strings does. A declared target change
            (:class:`~potentia.potentials.ops.StopAt`): target(x) = P(the LM's output
            begins with x) · constraint(x) when a stop string first occurs in x's last
            token, P(x · EOS) · constraint(x) when x holds none. The constraint sees the
            whole token string, stop string included; ``Result.texts`` are cut after the
            first stop string (kept), ``contexts`` are not. Every method takes it.
        budget_guard: SMC with a constraint that ends the string itself (``pt.json``'s
            structured mode): make the value finish within ``max_tokens``. A declared
            restriction (:class:`~potentia.constraints.completion.BudgetGuard`): once the
            tokens left only just suffice, the value is closed the short way; and, unless
            ``twist`` is given, the length twist
            :class:`~potentia.constraints.completion.CompletionTwist` guides resampling
            (no change of target); and the particles are not resampled while one of them is
            tight (its copies would stay identical; docs/smc.md, "Defaults for structured
            output"). ``False``: none of these (see docs/constraints.md).

    A JSON constraint (``pt.json(schema)``) also gives ``Result.values``: the parsed
    values (``json.loads``), or validated instances when the schema is a Pydantic model;
    ``None`` for a particle that did not finish or does not validate.

    When a budget runs out the run returns what it has: the message and
    ``Result.extra["stopped_by"]`` name the budget and the fix. So does Ctrl-C
    (``KeyboardInterrupt``): the partial result is returned instead of raised.

    Returns:
        A :class:`Result` with the weighted particles, ``posterior`` and ``log_z``.
    """
    validate_run_args(particles, max_tokens, ess_threshold, on_max_tokens, "particles")
    validate_budgets(time_limit, max_lm_calls)
    if not isinstance(budget_guard, bool):
        raise TypeError(f"`budget_guard` is {budget_guard!r}; pass True or False.")
    stops = check_stop(stop)
    if stop is not None and not stops:
        raise ValueError("`stop` is an empty list; pass at least one stop string, or None.")
    if stops and method not in ("smc", "asap", "cars", "lcd", *SEARCH_METHODS):
        raise ValueError(
            f"`stop` is not supported by the registered method {method!r}; wrap its LM in "
            "potentia.potentials.ops.StopAt yourself, or use a built-in method."
        )
    if max_attempts is not None:
        if method == "smc":
            raise ValueError(
                "`max_attempts` bounds the walks of method='asap'|'cars'|'lcd'; SMC makes "
                "one attempt per particle. Use `max_lm_calls` or `time_limit` with SMC."
            )
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int | np.integer)
            or max_attempts < 1
        ):
            raise ValueError(f"`max_attempts` is {max_attempts!r}; pass an int >= 1, or None.")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float | np.floating | np.integer)
        or not (0 < float(temperature) < np.inf)
    ):
        raise ValueError(
            f"`temperature` is {temperature!r}; pass a finite number > 0 (1 = the LM itself)."
        )
    if float(temperature) != 1.0 and method != "smc":
        raise ValueError(
            f"`temperature`={temperature} changes the target, which method={method!r} "
            "cannot sample (its θ trie needs the LM's own probabilities); use method='smc'."
        )
    if resampling != "auto":
        try:
            get_scheme(resampling)
        except ValueError as e:
            raise ValueError(
                f"{e} Or 'auto' (the default): residual for structured output."
            ) from None
    if method != "smc" and method not in METHODS:
        raise ValueError(f"`method` is {method!r}; available: {['smc', *sorted(METHODS)]}.")
    if unit is not None:
        if method != "smc":
            raise ValueError(
                f"`unit` is for method='smc' (resampling at unit boundaries); method={method!r} "
                "takes no unit. For step-level search use potentia.search.astar(..., "
                "expand='sample', unit=...)."
            )
        as_boundary(unit)  # a clear error for a bad unit, before any LM call
    if method != "smc" and (critic is not None or twist is not None):
        raise ValueError(
            f"`critic` and `twist` are for method='smc'; method={method!r} ignores them. "
            "Multiply a critic into the constraint (constraint * critic) for a search, or "
            "use method='smc'."
        )
    if (
        method != "smc"
        and method not in SEARCH_METHODS
        and (constraint is None or not getattr(constraint, "hard", False))
    ):
        raise ValueError(
            f"`method={method!r}` needs a hard `constraint` (weights in {{0, 1}}), got "
            f"{constraint!r}; use method='smc' for soft potentials or no constraint."
        )
    if sampler != "auto" and sampler not in SAMPLERS:
        raise ValueError(f"`sampler` is {sampler!r}; choose 'auto' or one of {sorted(SAMPLERS)}.")
    if seed is not None and not isinstance(seed, int | np.integer | np.random.Generator):
        raise TypeError(f"`seed` is {seed!r}; pass an int or a numpy.random.Generator.")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"`progress` is {progress!r}; pass True, False or None.")
    if (top_k is not None or top_p is not None) and method != "smc":
        raise ValueError(
            f"`top_k`/`top_p` change the target's LM and are for method='smc'; method={method!r} "
            "takes the LM as it is."
        )
    check_truncation(top_k, top_p)
    if not isinstance(chat, bool):
        raise TypeError(f"`chat` is {chat!r}; pass True or False.")
    if chat:
        if not isinstance(prompt, str):
            raise TypeError(
                "`chat=True` wraps a text `prompt` as a user turn; pass the prompt text, or "
                'pass the messages themselves as `prompt=[{"role": "user", "content": ...}]`.'
            )
        if not hasattr(model, "tokenizer") or isinstance(model, Potential):
            raise ValueError(
                f"`chat=True` needs a model with a tokenizer's chat template; "
                f"{type(model).__name__} has none. Pass chat=False."
            )
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and any(isinstance(m, dict) for m in prompt):
        for i, m in enumerate(prompt):
            if not (
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)
            ):
                raise ValueError(
                    f"`prompt[{i}]` is {m!r:.80}; chat messages are dicts with str 'role' "
                    "and 'content', e.g. {'role': 'user', 'content': 'Hi'}."
                )
    if not isinstance(model, Potential):
        _check_context_window(model, prompt, max_tokens)
    if method != "smc":
        if constraint is not None:
            check_hard_weights(as_potential(constraint, "constraint"))
        if not hasattr(model, "potential"):
            raise TypeError(f"`model` is {type(model).__name__}; method={method!r} needs a model.")
        if max_lm_calls is None and method in ("asap", "cars", "lcd"):
            max_lm_calls = TRIE_LM_CALLS_PER_TOKEN * particles * max_tokens
        out = METHODS[method](
            model,
            prompt,
            constraint,
            n=particles,
            max_tokens=max_tokens,
            seed=seed,
            max_attempts=max_attempts,
            max_lm_calls=max_lm_calls,
            time_limit=time_limit,
            progress=progress,
            **({"stop": stops} if stops else {}),
        )
        return _finish(out, constraint, stops)
    lm = _lm_potential(model, prompt)
    prefill(lm, progress)  # a long prompt: chunked, with a bar
    c = _coerce_constraint(constraint, lm.vocab)
    if top_k is not None or top_p is not None:
        lm = Truncate(lm, top_k, top_p)  # the declared LM: top-k / top-p renormalised rows
    if stops:
        lm = StopAt(lm, stops)  # the declared LM: it stops at a stop string
    if float(temperature) != 1.0:
        lm = lm ** (1.0 / float(temperature))  # the declared target LM^(1/T) · constraint
    cs = c  # the constraint the token sampler sees
    guard = None
    if c is not None and getattr(c, "ends_itself", False):
        lm = AutoStop(lm, c)  # a closed structured value ends the string (no EOS needed)
        if budget_guard and isinstance(c, LLGConstraint):
            # finish within max_tokens: a declared restriction, and a length twist
            guard = BudgetGuard(c, lm.vocab, max_tokens)
            cs = c * guard
            if twist is None:
                twist = CompletionTwist(c, lm.vocab, max_tokens)
    if resampling == "auto":
        resampling = "residual" if guard is not None else "multinomial"
    if sampler == "auto":
        sampler = "awrs" if (c is not None and c.hard and "awrs" in SAMPLERS) else "direct"
    token_sampler = SAMPLERS[sampler](lm, cs)
    run = {
        "n_particles": particles,
        "max_tokens": max_tokens,
        "rng": seed,
        "ess_threshold": ess_threshold,
        "resampling": resampling,
        "critic": critic,
        "twist": twist,
        "on_max_tokens": on_max_tokens,
        "time_limit": time_limit,
        "max_lm_calls": max_lm_calls,
    }
    if unit is not None:
        out = unit_smc(token_sampler, unit, **run)  # no progress bar at unit level yet
    else:
        hold = None if guard is None else _while_none_tight(guard, max_tokens)
        out = smc(token_sampler, progress=progress, resample_if=hold, **run)
    if guard is not None:
        out = _explain_guard_deaths(out, guard, max_tokens)
    return _finish(out, constraint, stops)


def _while_none_tight(guard: BudgetGuard, max_tokens: int) -> Callable[[Particles], bool]:
    """Resample only while no live particle is *tight* under the budget guard.

    A tight particle (its shortest completion found needs all the tokens left) goes on by
    that completion; copies of it made now would stay identical to the end, and
    resampling could not help it finish. So the run keeps its particles (and weights)
    until those have finished, unless a particle has died since the last resampling
    (then resampling replaces it). The decision is a function of the particles at that
    step, like the ESS test, and the weights stay proper.
    """

    def resample_if(p: Particles) -> bool:
        if any(s.startswith("dead") for s in p.status):
            return True  # replace the dead first: a valid copy beats a dead particle
        st = p.tstate  # the length twist's rows hold the guard's rows, if it is that twist
        same = isinstance(st, CompletionTwistState) and st.potential.bytes_c is guard.bytes_c
        for r, i in enumerate(p.live.tolist()):
            ctx = p.contexts[i]
            if guard.tight(st.rows[r] if same else guard.row(ctx), len(ctx)):
                return False
        return True

    return resample_if


_NO_TOKEN = "dead: the target has no allowed next token at step "


def _explain_guard_deaths(out: Result, guard: BudgetGuard, max_tokens: int) -> Result:
    """Name the budget guard where it left a particle no token, in the user's terms.

    A particle dies with "no allowed next token" when the guard is tight (the tokens
    left only just suffice for the shortest completion found) and no token both starts
    that completion and leaves the rest room: at step 0 no value fits in ``max_tokens``
    at all; later, the particle's last token left too few tokens to close its value.
    The status (and so the message) then says so with the counts; other deaths are kept.
    """
    status = list(out.status)
    for i, s in enumerate(status):
        if not s.startswith(_NO_TOKEN):
            continue
        ctx = out.contexts[i]
        row = guard.row(ctx)
        allowed = guard.allowed_next(row, len(ctx))
        if allowed is None or allowed:
            continue  # not tight, or the guard left a token: the constraint or the LM did it
        need, left, step = guard.shortest(row), max_tokens - len(ctx), s[len(_NO_TOKEN) :]
        if not ctx:
            why = (
                f"no value of the constraint fits in max_tokens={max_tokens}: the shortest "
                f"one found needs {need} tokens"
            )
        else:
            why = (
                f"the value could no longer be closed within max_tokens={max_tokens}: "
                f"{left} tokens left, its shortest completion found needs {need}"
            )
        status[i] = f"dead: {why} at step {step}"
    if status == out.status:
        return out
    stopped = out.extra.get("stopped_by")
    return replace(out, status=status, message=run_message(status, out.n_steps, out.log_z, stopped))


# ---- search engines -------------------------------------------------------------------
# pt.sample(..., method="astar" | "beam" | "deal" | "bon"): `particles` is the number of
# best strings (A*), the beam width (beam, DeAL) or N (best-of-N); `max_lm_calls` is the
# LM-token budget, `max_attempts` the expansion budget, `time_limit` the wall-clock one.
# Custom heuristics, rewards and units: call potentia.search directly.
def _search_method(name: str) -> Callable[..., Result]:
    def run(
        model: Any,
        prompt: Any,
        constraint: Potential | None,
        *,
        n: int,
        max_tokens: int,
        seed,
        max_attempts: int | None = None,
        max_lm_calls: int | None = None,
        time_limit: float | None = None,
        progress: bool | None = None,
        stop: tuple[bytes, ...] = (),
    ) -> Result:
        del progress  # the searches report through Result.extra["spent"]
        lm = _lm_potential(model, prompt)
        c = _coerce_constraint(constraint, lm.vocab)
        if stop:
            lm = StopAt(lm, stop)
        target = lm if c is None else lm * c
        budget = Budget(lm_tokens=max_lm_calls, expansions=max_attempts, time_limit=time_limit)
        if name == "astar":
            return astar(target, max_tokens, n_best=n, budget=budget)
        if name == "beam":
            return beam_search(target, max_tokens, n, budget=budget)
        if name == "deal":
            return deal(target, max_tokens, n, lookahead=2, budget=budget)
        return best_of_n(DirectSampler(target), n, max_tokens, rng=seed, budget=budget)

    run.__doc__ = f"potentia.search engine {name!r} with the front door's budgets."
    return run


#: The search engines: they take a hard, a soft or no constraint (the target is LM × it).
SEARCH_METHODS = ("astar", "beam", "deal", "bon")
for _name in SEARCH_METHODS:
    register_method(_name, _search_method(_name))
# ---- end of search engines ----------------------------------------------------------
