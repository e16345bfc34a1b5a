r"""Sequential Monte Carlo over token sequences.

Feynman–Kac view. Let γ_t(x_{1:t}) = target.prefix(x_{1:t}) · critic.prefix(x_{1:t}) ·
ψ(x_{1:t}) be the intermediate targets, ψ an optional *twist* (ψ ≡ 1 when none). At each
step every live particle is extended by the token sampler (the mutation M_t), which returns
a log weight w properly weighted for target.logw_next; the particle's weight is multiplied
by the incremental potential

    G_t = w · critic.logw_next(x)[a] · ψ(x a) / ψ(x)          (a ≠ EOS)
    G_t = w · critic.logw_next(x)[EOS] / ψ(x)                 (a = EOS: the twist is removed)

so a finished string x carries weight target(x) · critic(x) / q(x): properly weighted for
the untwisted target. When the effective sample size falls below ``ess_threshold · N`` all
particles (finished ones too) are resampled (R_t) and their weights reset to the average,
whose log is accumulated into log Ẑ. At the end log Ẑ = accumulated + log mean(w), an
unbiased estimate of Z = Σ_x target(x) critic(x).

``max_tokens``: a particle still unfinished after ``max_tokens`` tokens is either forced to
EOS with weight ``target.logw_next(x)[EOS]`` (``on_max_tokens="force_eos"``: the run then
targets the target restricted to strings of length ≤ max_tokens, exactly) or kept with
status ``"truncated"`` and excluded from the posterior (``"truncate"``).

All live particles advance together: one batched call of the sampler (hence of the LM) per
step. Finished and dead particles leave the batch state; resampling reindexes it by
ancestor (``PotentialState.select``).

The loop is split, blackjax-style, into an explicit particle state (:class:`Particles`),
a fixed kernel (:class:`SMCKernel`) and the functions :func:`init`, :func:`step`,
:func:`stop` and :func:`finish`; :func:`smc` is their composition, and other runners
(step units, many prompts) reuse the same step.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from potentia.potentials.base import (
    Potential,
    PotentialState,
    as_potential,
    check_logw,
    logsumexp,
)
from potentia.result import Result
from potentia.samplers.base import TokenSampler
from potentia.smc.resampling import Resampler, get_scheme

__all__ = [
    "smc",
    "SMCKernel",
    "Particles",
    "init",
    "step",
    "resample_particles",
    "stop",
    "finish",
    "check_kernel",
    "make_kernel",
    "budget_out",
    "validate_run_args",
    "validate_budgets",
    "halt",
    "run_message",
    "cause_of",
]


def validate_run_args(
    n_particles: object,
    max_tokens: object,
    ess_threshold: object,
    on_max_tokens: object,
    particles_name: str = "n_particles",
) -> None:
    """Raise ``TypeError``/``ValueError`` for bad engine arguments (before any LM call).

    Args:
        n_particles: Number of particles.
        max_tokens: Length bound.
        ess_threshold: Resampling threshold.
        on_max_tokens: ``"force_eos"`` or ``"truncate"``.
        particles_name: The public name of ``n_particles`` in the caller's signature
            (``pt.sample`` calls it ``particles``), used in the messages.
    """
    name = particles_name
    if isinstance(n_particles, bool) or not isinstance(n_particles, int | np.integer):
        raise TypeError(
            f"`{name}` is {n_particles!r} ({type(n_particles).__name__}); pass an int >= 1."
        )
    if n_particles <= 0:
        raise ValueError(f"`{name}` is {n_particles}; pass an int >= 1.")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int | np.integer):
        raise TypeError(f"`max_tokens` is {max_tokens!r}; pass an int >= 1.")
    if max_tokens <= 0:
        raise ValueError(f"`max_tokens` is {max_tokens}; pass an int >= 1.")
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, int | float):
        raise TypeError(f"`ess_threshold` is {ess_threshold!r}; pass a number in [0, 1].")
    if not 0.0 <= float(ess_threshold) <= 1.0:
        raise ValueError(
            f"`ess_threshold` is {ess_threshold}; it must lie in [0, 1] "
            "(0 = never resample, 1 = resample every step)."
        )
    if on_max_tokens not in ("force_eos", "truncate"):
        raise ValueError(f"`on_max_tokens` is {on_max_tokens!r}; choose 'force_eos' or 'truncate'.")


def validate_budgets(time_limit: object = None, max_lm_calls: object = None) -> None:
    """Raise ``TypeError``/``ValueError`` for a bad ``time_limit`` or ``max_lm_calls``.

    Both may be ``None`` (no limit).
    """
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, int | float | np.number):
            raise TypeError(
                f"`time_limit` is {time_limit!r}; pass seconds as a number > 0, or None."
            )
        if not float(time_limit) > 0:
            raise ValueError(f"`time_limit` is {time_limit}; pass seconds > 0, or None.")
    if max_lm_calls is not None:
        if isinstance(max_lm_calls, bool) or not isinstance(max_lm_calls, int | np.integer):
            raise TypeError(f"`max_lm_calls` is {max_lm_calls!r}; pass an int >= 1, or None.")
        if max_lm_calls < 1:
            raise ValueError(f"`max_lm_calls` is {max_lm_calls}; pass an int >= 1, or None.")


def _ess(logw: np.ndarray) -> float:
    tot = logsumexp(logw)
    if tot == -np.inf:
        return 0.0
    w = np.exp(logw - tot)
    return float(1.0 / (w**2).sum())


@dataclass
class SMCKernel:
    """What stays fixed during a run: the sampler, the extra potentials, the resampling rule.

    Attributes:
        sampler: Proposes next tokens, properly weighted for ``sampler.target``.
        critic: Potential multiplied into the target token by token, or ``None``.
        twist: Potential ψ used only to guide resampling (divided out at EOS), or ``None``.
        ess_threshold: Resample when ESS < ``ess_threshold · N``.
        resample: ``(rng, weights, n) -> ancestor indices``.
        resample_if: A further condition on the particles, or ``None``: when the ESS is
            low, resample only if ``resample_if(particles)`` is true. Like the ESS test it
            is a function of the particle system at that step, so it changes when the
            particles are resampled, not what the weights are proper for.
    """

    sampler: TokenSampler
    critic: Potential | None = None
    twist: Potential | None = None
    ess_threshold: float = 0.5
    resample: Resampler = field(default_factory=lambda: get_scheme("multinomial"))
    resample_if: Callable[[Particles], bool] | None = None


@dataclass
class Particles:
    """The explicit particle state of a run (what :func:`step` reads and writes).

    Attributes:
        contexts: Token indices of every particle (EOS excluded).
        status: ``"running"``, ``"finished"``, ``"truncated"`` or ``"dead: <why>"``.
        logw: Log weight of every particle.
        twist_lv: Log twist value each particle currently carries (0 without a twist).
        live: Particle index of each row of the batch states (the running particles).
        state: The sampler's batch state (one row per live particle).
        cstate: The critic's batch state, or ``None``.
        tstate: The twist's batch state, or ``None``.
        log_z_acc: Sum of the log mean weights at past resampling events.
        step: Steps taken.
        ess_history: ESS after each step's reweighting.
        resampled_at: Steps at which the particles were resampled.
        target_evals: Full next-token vectors the sampler computed.
        constraint_checks: Single-token constraint checks the sampler made.
        logw_history: The N log weights after each step's reweighting (before any
            resampling; the weights ``ess_history`` was computed from), one small vector
            per step.
        ancestors: At each resampling event (in the order of ``resampled_at``), the
            ancestor index of every new particle: particle ``j`` after the event is a copy
            of particle ``ancestors[e][j]`` before it.
    """

    contexts: list[list[int]]
    status: list[str]
    logw: np.ndarray
    twist_lv: np.ndarray
    live: np.ndarray
    state: PotentialState
    cstate: PotentialState | None
    tstate: PotentialState | None
    log_z_acc: float = 0.0
    step: int = 0
    ess_history: list[float] = field(default_factory=list)
    resampled_at: list[int] = field(default_factory=list)
    target_evals: int = 0
    constraint_checks: int = 0
    logw_history: list[np.ndarray] = field(default_factory=list)
    ancestors: list[np.ndarray] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of particles N."""
        return len(self.status)


def init(kernel: SMCKernel, n_particles: int) -> Particles:
    """N particles at the empty string, weighted by the prefix weights of ``[]``."""
    target, critic, twist = kernel.sampler.target, kernel.critic, kernel.twist
    N = int(n_particles)
    logw = np.full(N, target.prefix([]))
    twist_lv = np.zeros(N)
    if critic is not None:
        logw += critic.prefix([])
    if twist is not None:
        twist_lv[:] = twist.prefix([])
        logw += twist_lv
    check_logw(logw, "initial prefix weight")
    status = ["running"] * N
    if logw[0] == -np.inf:
        status = ["dead: the target's prefix weight of the empty string is zero"] * N
    live = np.flatnonzero(logw > -np.inf)
    return Particles(
        contexts=[[] for _ in range(N)],
        status=status,
        logw=logw,
        twist_lv=twist_lv,
        live=live,
        state=kernel.sampler.init_state(len(live)),
        cstate=critic.init_state(len(live)) if critic is not None else None,
        tstate=twist.init_state(len(live)) if twist is not None else None,
    )


def step(kernel: SMCKernel, p: Particles, rng: np.random.Generator) -> Particles:
    """Extend every live particle by one token and reweight; resample if the ESS is low.

    One batched sampler call; the incremental potential G_t of the module docstring.

    Updates ``p`` in place and returns it.
    """
    V = len(kernel.sampler.target.vocab)
    live = p.live
    rows = np.arange(len(live))
    out = kernel.sampler.sample(p.state, rng)
    p.target_evals += out.target_evals
    p.constraint_checks += out.constraint_checks
    tokens = np.asarray(out.tokens, dtype=np.int64)
    inc = np.asarray(out.log_w, dtype=float).copy()
    check_logw(inc, f"{type(kernel.sampler).__name__}.sample")
    why = np.array(["the target has no allowed next token"] * len(live), dtype=object)
    if p.cstate is not None:
        c = p.cstate.logw_tokens(rows, tokens)
        why[(inc > -np.inf) & (c == -np.inf)] = "the critic rejected the token"
        inc += c
    is_eos = tokens == V
    if p.tstate is not None:
        tw = np.zeros(len(live))
        ne = np.flatnonzero(~is_eos & (inc > -np.inf))
        if len(ne):
            tw[ne] = p.tstate.logw_tokens(ne, tokens[ne])
        why[(inc > -np.inf) & (tw == -np.inf)] = "the twist is zero"
        p.twist_lv[live] += tw
        inc += tw
        inc = _cancel_twist(inc, is_eos, p.twist_lv[live])
    p.logw[live] += inc
    dead = inc == -np.inf
    for r in np.flatnonzero(dead):
        p.status[live[r]] = f"dead: {why[r]} at step {p.step}"
    for r in np.flatnonzero(is_eos & ~dead):
        p.status[live[r]] = "finished"
    for r in np.flatnonzero(~is_eos & ~dead):
        p.contexts[live[r]] = p.contexts[live[r]] + [int(tokens[r])]
    keep = np.flatnonzero(~is_eos & ~dead)
    p.live = live[keep]
    p.state = p.state.select(keep).advance(tokens[keep])
    if p.cstate is not None:
        p.cstate = p.cstate.select(keep).advance(tokens[keep])
    if p.tstate is not None:
        p.tstate = p.tstate.select(keep).advance(tokens[keep])
    p.step += 1
    ess = _ess(p.logw)
    p.ess_history.append(ess)
    p.logw_history.append(p.logw.copy())
    low = len(p.live) and ess > 0 and ess < kernel.ess_threshold * p.n
    if low and (kernel.resample_if is None or kernel.resample_if(p)):
        resample_particles(kernel, p, rng)
    return p


def resample_particles(kernel: SMCKernel, p: Particles, rng: np.random.Generator) -> None:
    """Resample all N particles (finished ones too) ∝ weight.

    Weights reset to the mean, whose log joins log Ẑ; batch states are reindexed by ancestor.
    """
    N = p.n
    tot = logsumexp(p.logw)
    idx = kernel.resample(rng, np.exp(p.logw - tot), N)
    p.log_z_acc += tot - np.log(N)
    p.logw = np.zeros(N)
    p.contexts = [p.contexts[i] for i in idx]
    p.status = [p.status[i] for i in idx]
    p.twist_lv = p.twist_lv[idx]
    row_of = np.full(N, -1)
    row_of[p.live] = np.arange(len(p.live))
    new_live = np.flatnonzero(row_of[idx] >= 0)
    sel = row_of[idx[new_live]]
    p.live = new_live
    p.state = p.state.select(sel)
    p.cstate = p.cstate.select(sel) if p.cstate is not None else None
    p.tstate = p.tstate.select(sel) if p.tstate is not None else None
    p.resampled_at.append(p.step)
    p.ancestors.append(np.array(idx, dtype=np.int64))


def stop(kernel: SMCKernel, p: Particles, on_max_tokens: str) -> Particles:
    """End the particles still running at the length bound (counts as one step).

    ``"force_eos"`` ends them with EOS and its proper weight; ``"truncate"`` marks them.
    """
    live = p.live
    if on_max_tokens == "force_eos":
        V = len(kernel.sampler.target.vocab)
        rows, eos = np.arange(len(live)), np.full(len(live), V)
        inc = p.state.logw_tokens(rows, eos)
        if p.cstate is not None:
            inc = inc + p.cstate.logw_tokens(rows, eos)
        p.logw[live] += _cancel_twist(inc, np.ones(len(live), bool), p.twist_lv[live])
        where = p.state.where() if (inc == -np.inf).any() else [None] * len(live)
        for i, ok, w in zip(live, inc > -np.inf, where):
            why = "EOS has weight zero at max_tokens" + (f", {w}" if w else "")
            p.status[i] = "finished" if ok else f"dead: {why}"
    else:
        for i in live:
            p.status[i] = "truncated"
        p.logw[live] -= p.twist_lv[live]
    p.live = live[:0]
    p.step += 1
    p.ess_history.append(_ess(p.logw))
    p.logw_history.append(p.logw.copy())
    return p


def halt(kernel: SMCKernel, p: Particles) -> Particles:
    """End the running particles early (a budget ran out or the run was interrupted).

    They get status ``"truncated"``, their twist is divided out, and they are excluded
    from the posterior; unlike :func:`stop` no EOS weight is taken and no step is counted.
    """
    del kernel  # same signature as the other stages
    for i in p.live:
        p.status[i] = "truncated"
    p.logw[p.live] -= p.twist_lv[p.live]
    p.live = p.live[:0]
    return p


def finish(
    kernel: SMCKernel, p: Particles, wall_time: float = 0.0, stopped_by: str | None = None
) -> Result:
    """log Ẑ = accumulated + log mean of the finished weights; the run as a :class:`Result`.

    Args:
        kernel: The run's kernel.
        p: The particles after the last stage.
        wall_time: Seconds the run took.
        stopped_by: Why the run ended before every particle finished or reached the length
            bound (e.g. ``"`time_limit`=5 s ran out"``), or ``None``; it leads the message
            and is kept in ``Result.extra["stopped_by"]``.
    """
    finished = np.array([s == "finished" for s in p.status])
    tot = logsumexp(np.where(finished, p.logw, -np.inf))
    log_z = float(p.log_z_acc + tot - np.log(p.n)) if tot > -np.inf else -np.inf
    vocab = kernel.sampler.target.vocab
    message = run_message(p.status, p.step, log_z, stopped_by)
    return Result(
        contexts=p.contexts,
        texts=[vocab.decode(c) for c in p.contexts],
        log_weights=p.logw,
        log_z=log_z,
        status=p.status,
        ess_history=p.ess_history,
        resampled_at=p.resampled_at,
        n_steps=p.step,
        target_evals=p.target_evals,
        constraint_checks=p.constraint_checks,
        wall_time=wall_time,
        method=f"smc[{type(kernel.sampler).__name__}]",
        message=message,
        extra={"stopped_by": stopped_by} if stopped_by else {},
        logw_history=_stack(p.logw_history, p.n, float),
        ancestors=_stack(p.ancestors, p.n, np.int64),
    )


def _stack(rows: list[np.ndarray], n: int, dtype) -> np.ndarray:
    """Per-step vectors of length ``n`` as one ``(len(rows), n)`` array."""
    return np.array(rows, dtype=dtype).reshape(len(rows), n)


def smc(
    sampler: TokenSampler,
    n_particles: int,
    max_tokens: int,
    rng: np.random.Generator | int | None = None,
    ess_threshold: float = 0.5,
    resampling: str | Resampler = "multinomial",
    critic: Potential | None = None,
    twist: Potential | None = None,
    on_max_tokens: str = "force_eos",
    progress: bool | None = False,
    time_limit: float | None = None,
    max_lm_calls: int | None = None,
    resample_if: Callable[[Particles], bool] | None = None,
) -> Result:
    """Run SMC with a token sampler.

    :func:`init`, :func:`step` until every particle has finished, ``max_tokens`` is
    reached or a budget runs out, then :func:`stop` (length bound) or :func:`halt`
    (budget), and :func:`finish`.

    Args:
        sampler: Proposes next tokens, properly weighted for ``sampler.target``.
        n_particles: Number of particles N.
        max_tokens: Largest number of tokens a particle may generate.
        rng: A ``numpy.random.Generator`` or a seed.
        ess_threshold: Resample when ESS < ``ess_threshold · N`` (0: never; 1: always).
        resampling: ``"multinomial"``, ``"stratified"``, ``"systematic"``, ``"residual"``
            or a function ``(rng, weights, n) -> indices``.
        critic: A potential multiplied into the target, applied token by token
            (``logw_next`` at each step, its completion weight at EOS).
        twist: A potential ψ used only to guide resampling; its value is divided out at
            EOS, so the result targets ``sampler.target * critic`` exactly. ψ must be
            positive wherever the target is (soundness).
        on_max_tokens: ``"force_eos"`` or ``"truncate"`` (see module docstring).
        progress: Show a progress bar (``None``: only if the run lasts over 2 s, and
            never under pytest).
        time_limit: Wall-clock budget in seconds, checked before each step; ``None``: none.
        max_lm_calls: Budget of steps, each one batched LM call for all live particles;
            ``None``: none (``max_tokens`` bounds the run anyway).
        resample_if: When the ESS is low, resample only if ``resample_if(particles)``
            (see :class:`SMCKernel`); ``None``: always.

    When a budget runs out (or the run is interrupted with Ctrl-C), the particles still
    running are marked ``"truncated"`` (excluded from the posterior, as with
    ``on_max_tokens="truncate"``), and the message and ``extra["stopped_by"]`` name the
    budget.

    Returns:
        A :class:`Result`; if every particle dies, its ``message`` says when and why.
    """
    validate_run_args(n_particles, max_tokens, ess_threshold, on_max_tokens)
    validate_budgets(time_limit, max_lm_calls)
    kernel = make_kernel(sampler, critic, twist, ess_threshold, resampling)
    kernel.resample_if = resample_if
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    t0 = time.perf_counter()
    p = init(kernel, n_particles)
    bar = _progress(progress, max_tokens)
    stopped_by = None
    try:
        while len(p.live) and p.step < max_tokens:
            stopped_by = budget_out(p.step, time.perf_counter() - t0, time_limit, max_lm_calls)
            if stopped_by:
                break
            step(kernel, p, rng)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(live=len(p.live), ess=f"{p.ess_history[-1]:.1f}", refresh=False)
    except KeyboardInterrupt:
        stopped_by = f"interrupted (KeyboardInterrupt) at step {p.step}"
        _consistent_after_interrupt(p)
    if len(p.live):
        if stopped_by:
            halt(kernel, p)
        else:
            stop(kernel, p, on_max_tokens)
    if bar is not None:
        bar.close()
    return finish(kernel, p, time.perf_counter() - t0, stopped_by)


def make_kernel(
    sampler: TokenSampler,
    critic: Potential | None,
    twist: Potential | None,
    ess_threshold: float,
    resampling: str | Resampler,
) -> SMCKernel:
    """The kernel of a run, after checking the sampler and the critic's and twist's vocabularies."""
    if not isinstance(sampler, TokenSampler):
        raise TypeError(
            f"`sampler` is {type(sampler).__name__}; pass a TokenSampler such as "
            "DirectSampler(target)."
        )
    kernel = SMCKernel(sampler, critic, twist, float(ess_threshold), get_scheme(resampling))
    check_kernel(kernel)
    return kernel


def budget_out(
    steps: int, elapsed: float, time_limit: float | None, max_lm_calls: int | None
) -> str | None:
    """Which budget has run out (a sentence with the fix), or ``None``."""
    if max_lm_calls is not None and steps >= max_lm_calls:
        return (
            f"`max_lm_calls`={max_lm_calls} ran out after {steps} steps "
            "(raise `max_lm_calls` for longer strings)"
        )
    if time_limit is not None and elapsed >= time_limit:
        return (
            f"`time_limit`={time_limit:g} s ran out after {steps} steps ({elapsed:.1f} s; "
            "raise `time_limit`)"
        )
    return None


def _consistent_after_interrupt(p: Particles) -> None:
    """After Ctrl-C inside :func:`step`, make the state usable for :func:`halt`.

    An interrupt may land between the reweighting and the state update; the rows of
    ``p.live`` then no longer match the batch states, so every particle still marked
    running is treated as live (its weight so far is kept) and the states are dropped.
    """
    p.live = np.array([i for i, s in enumerate(p.status) if s == "running"], dtype=np.int64)


def check_kernel(kernel: SMCKernel) -> None:
    """Raise if the critic or twist is not a potential over the sampler's vocabulary."""
    vocab = kernel.sampler.target.vocab
    for name, pot in (("critic", kernel.critic), ("twist", kernel.twist)):
        if pot is not None:
            as_potential(pot, name)
            if pot.vocab != vocab and pot.vocab.tokens != vocab.tokens:
                raise ValueError(
                    f"`{name}` has vocabulary {pot.vocab!r}, the sampler's target has "
                    f"{vocab!r}; they must be the same (lift or align the {name} first)."
                )


def _cancel_twist(inc: np.ndarray, is_eos: np.ndarray, twist_lv: np.ndarray) -> np.ndarray:
    """Divide out, at EOS, the exact twist value each finishing particle received."""
    return np.where(is_eos, inc - twist_lv, inc)


#: What to do about each cause of death (keys: the status text after "dead: ", step removed).
_FIXES = {
    "EOS has weight zero at max_tokens": (
        "the strings were still incomplete at the length bound: raise `max_tokens`, or "
        "make short completions likelier (a prompt with an example, a twist)"
    ),
    "the target has no allowed next token": (
        "every next token is forbidden by the constraint or has LM probability zero: "
        "check that the constraint can be completed from these prefixes under this "
        "tokenizer (see `Result.unfinished`)"
    ),
    "the critic rejected the token": "the `critic` gave weight zero: loosen the critic",
    "the twist is zero": "`twist` must be positive wherever the target is: fix the twist",
    "the target's prefix weight of the empty string is zero": (
        "the constraint accepts no string: check the constraint"
    ),
    # set by pt.sample where its budget guard (budget_guard=True) left no token
    "no value of the constraint fits in max_tokens": (
        "raise `max_tokens` to at least the tokens the shortest value needs"
    ),
    "the value could no longer be closed within max_tokens": (
        "raise `max_tokens`: the budget guard closes a value the short way once the tokens "
        "left only just suffice, but this particle's last token left too few"
    ),
    "truncated": (
        "raise `max_tokens` (or the budget that stopped the run), or pass on_max_tokens='force_eos'"
    ),
}


def cause_of(status: str) -> str:
    """A status without its step number: ``"dead: X at step 3"`` → ``"X"``."""
    if status == "truncated":
        return "truncated"
    why = status[len("dead: ") :] if status.startswith("dead: ") else status
    head, sep, tail = why.rpartition(" at step ")
    return head if sep and tail.isdigit() else why


def _fix(cause: str) -> str:
    """The fix for a cause: the :data:`_FIXES` entry it starts with."""
    for key, fix in _FIXES.items():
        if cause.startswith(key):
            return fix
    return "see `Result.status`"


def run_message(status: list[str], step: int, log_z: float, stopped_by: str | None = None) -> str:
    """The one-line account of a run that :func:`finish` puts in ``Result.message``.

    When every particle died, the three commonest causes with their counts and fixes.

    Args:
        status: Per particle status (``"dead: <why> at step <k>"`` etc.).
        step: Steps the run took.
        log_z: The run's log Ẑ (``-inf``: nothing finished).
        stopped_by: Why the run stopped early, or ``None``.
    """
    message = _message(status, step, log_z)
    return f"stopped early: {stopped_by}; {message}" if stopped_by else message


def _message(status: list[str], step: int, log_z: float) -> str:
    counts = Counter(status)
    if log_z == -np.inf:
        n = len(status)
        causes = Counter(cause_of(s) for s in status if s != "finished")
        parts = []
        for cause, k in causes.most_common(3):
            label = (
                "truncated (still running when the run ended)" if cause == "truncated" else cause
            )
            fix = _fix(cause)
            parts.append(f"{k} of {n} particles: {label} ({fix})")
        return (
            f"all {n} particles died or were truncated after {step} steps: "
            + "; ".join(parts)
            + ". Their texts are in `Result.unfinished`."
        )
    dead = sum(n for s, n in counts.items() if s.startswith("dead"))
    trunc = counts.get("truncated", 0)
    parts = [f"{counts.get('finished', 0)} finished"]
    if dead:
        parts.append(f"{dead} dead")
    if trunc:
        parts.append(f"{trunc} truncated (excluded from the posterior)")
    return f"ran {step} steps: " + ", ".join(parts)


def _progress(progress: bool | None, total: int):
    if progress is False or (progress is None and "PYTEST_CURRENT_TEST" in os.environ):
        return None  # off in tests unless asked for explicitly
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="smc", unit="tok", delay=0 if progress else 2.0, leave=False)
