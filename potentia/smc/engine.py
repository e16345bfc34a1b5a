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
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np

from potentia.potentials.base import Potential, as_potential, check_logw, logsumexp
from potentia.samplers.base import TokenSampler
from potentia.smc.resampling import Resampler, get_scheme
from potentia.smc.result import Result

__all__ = ["smc", "validate_run_args"]


def validate_run_args(
    n_particles: object, max_tokens: object, ess_threshold: object, on_max_tokens: object
) -> None:
    """Raise ``TypeError``/``ValueError`` for bad engine arguments (before any LM call)."""
    if isinstance(n_particles, bool) or not isinstance(n_particles, int | np.integer):
        raise TypeError(
            f"`n_particles` is {n_particles!r} ({type(n_particles).__name__}); pass an int >= 1."
        )
    if n_particles <= 0:
        raise ValueError(f"`n_particles` is {n_particles}; pass an int >= 1.")
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


def _ess(logw: np.ndarray) -> float:
    tot = logsumexp(logw)
    if tot == -np.inf:
        return 0.0
    w = np.exp(logw - tot)
    return float(1.0 / (w**2).sum())


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
) -> Result:
    """Run SMC with a token sampler.

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

    Returns:
        A :class:`Result`; if every particle dies, its ``message`` says when and why.
    """
    validate_run_args(n_particles, max_tokens, ess_threshold, on_max_tokens)
    if not isinstance(sampler, TokenSampler):
        raise TypeError(
            f"`sampler` is {type(sampler).__name__}; pass a TokenSampler such as "
            "DirectSampler(target)."
        )
    resample = get_scheme(resampling)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    target = sampler.target
    vocab = target.vocab
    V = len(vocab)
    extra_pots = {}
    for name, pot in (("critic", critic), ("twist", twist)):
        if pot is not None:
            as_potential(pot, name)
            if pot.vocab != vocab and pot.vocab.tokens != vocab.tokens:
                raise ValueError(
                    f"`{name}` has vocabulary {pot.vocab!r}, the sampler's target has "
                    f"{vocab!r}; they must be the same (lift or align the {name} first)."
                )
            extra_pots[name] = pot
    N = int(n_particles)
    t0 = time.perf_counter()

    # Per-particle bookkeeping; "rows" are positions in the batch states (live particles).
    contexts: list[list[int]] = [[] for _ in range(N)]
    status = ["running"] * N
    logw = np.full(N, target.prefix([]))
    twist_lv = np.zeros(N)
    if critic is not None:
        logw += critic.prefix([])
    if twist is not None:
        twist_lv[:] = twist.prefix([])
        logw += twist_lv
    check_logw(logw, "initial prefix weight")
    if logw[0] == -np.inf:
        status = ["dead: the target's prefix weight of the empty string is zero"] * N
    live = np.flatnonzero(logw > -np.inf)  # particle index of each state row
    state = sampler.init_state(len(live))
    cstate = critic.init_state(len(live)) if critic is not None else None
    tstate = twist.init_state(len(live)) if twist is not None else None

    log_z_acc = 0.0
    ess_history: list[float] = []
    resampled_at: list[int] = []
    target_evals = constraint_checks = 0
    step = 0
    bar = _progress(progress, max_tokens)
    while len(live):
        rows = np.arange(len(live))
        if step >= max_tokens:
            # length bound reached: force EOS (proper weight) or report truncation
            if on_max_tokens == "force_eos":
                eos = np.full(len(live), V)
                inc = state.logw_tokens(rows, eos)
                if cstate is not None:
                    inc = inc + cstate.logw_tokens(rows, eos)
                logw[live] += _cancel_twist(inc, np.ones(len(live), bool), twist_lv[live])
                for p, ok in zip(live, inc > -np.inf):
                    status[p] = "finished" if ok else "dead: EOS has weight zero at max_tokens"
            else:
                for p in live:
                    status[p] = "truncated"
                logw[live] -= twist_lv[live]
            live = live[:0]
            step += 1
            ess_history.append(_ess(logw))
            break

        out = sampler.sample(state, rng)
        target_evals += out.target_evals
        constraint_checks += out.constraint_checks
        tokens = np.asarray(out.tokens, dtype=np.int64)
        inc = np.asarray(out.log_w, dtype=float).copy()
        check_logw(inc, f"{type(sampler).__name__}.sample")
        why = np.array(["the target has no allowed next token"] * len(live), dtype=object)
        if cstate is not None:
            c = cstate.logw_tokens(rows, tokens)
            why[(inc > -np.inf) & (c == -np.inf)] = "the critic rejected the token"
            inc += c
        is_eos = tokens == V
        if tstate is not None:
            tw = np.zeros(len(live))
            ne = np.flatnonzero(~is_eos & (inc > -np.inf))
            if len(ne):
                tw[ne] = tstate.logw_tokens(ne, tokens[ne])
            why[(inc > -np.inf) & (tw == -np.inf)] = "the twist is zero"
            twist_lv[live] += tw
            inc += tw
            inc = _cancel_twist(inc, is_eos, twist_lv[live])
        logw[live] += inc
        dead = inc == -np.inf
        for r in np.flatnonzero(dead):
            status[live[r]] = f"dead: {why[r]} at step {step}"
        for r in np.flatnonzero(is_eos & ~dead):
            status[live[r]] = "finished"
        for r in np.flatnonzero(~is_eos & ~dead):
            contexts[live[r]] = contexts[live[r]] + [int(tokens[r])]
        keep = np.flatnonzero(~is_eos & ~dead)
        live = live[keep]
        state = state.select(keep).advance(tokens[keep])
        cstate = cstate.select(keep).advance(tokens[keep]) if cstate is not None else None
        tstate = tstate.select(keep).advance(tokens[keep]) if tstate is not None else None
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(live=len(live), ess=f"{_ess(logw):.1f}")

        ess = _ess(logw)
        ess_history.append(ess)
        if len(live) and ess > 0 and ess < ess_threshold * N:
            tot = logsumexp(logw)
            idx = resample(rng, np.exp(logw - tot), N)
            log_z_acc += tot - np.log(N)
            logw = np.zeros(N)
            contexts = [contexts[i] for i in idx]
            status = [status[i] for i in idx]
            twist_lv = twist_lv[idx]
            row_of = np.full(N, -1)
            row_of[live] = np.arange(len(live))
            new_live = np.flatnonzero(row_of[idx] >= 0)
            sel = row_of[idx[new_live]]
            live = new_live
            state = state.select(sel)
            cstate = cstate.select(sel) if cstate is not None else None
            tstate = tstate.select(sel) if tstate is not None else None
            resampled_at.append(step)
    if bar is not None:
        bar.close()

    finished = np.array([s == "finished" for s in status])
    tot = logsumexp(np.where(finished, logw, -np.inf))
    log_z = float(log_z_acc + tot - np.log(N)) if tot > -np.inf else -np.inf
    message = _message(status, step, log_z)
    return Result(
        contexts=contexts,
        texts=[vocab.decode(c) for c in contexts],
        log_weights=logw,
        log_z=log_z,
        status=status,
        ess_history=ess_history,
        resampled_at=resampled_at,
        n_steps=step,
        target_evals=target_evals,
        constraint_checks=constraint_checks,
        wall_time=time.perf_counter() - t0,
        method=f"smc[{type(sampler).__name__}]",
        message=message,
    )


def _cancel_twist(inc: np.ndarray, is_eos: np.ndarray, twist_lv: np.ndarray) -> np.ndarray:
    """Divide out, at EOS, the exact twist value each finishing particle received."""
    return np.where(is_eos, inc - twist_lv, inc)


def _message(status: list[str], step: int, log_z: float) -> str:
    counts = Counter(status)
    if log_z == -np.inf:
        whys = Counter(s for s in status if s.startswith("dead"))
        detail = "; ".join(f"{n}× {s[6:]}" for s, n in whys.most_common(3))
        if not whys:
            detail = "every particle was truncated at max_tokens (raise `max_tokens`)"
        return f"all {len(status)} particles died or were truncated after {step} steps: {detail}"
    dead = sum(n for s, n in counts.items() if s.startswith("dead"))
    trunc = counts.get("truncated", 0)
    parts = [f"{counts.get('finished', 0)} finished"]
    if dead:
        parts.append(f"{dead} dead")
    if trunc:
        parts.append(f"{trunc} truncated at max_tokens (excluded from the posterior)")
    return f"ran {step} steps: " + ", ".join(parts)


def _progress(progress: bool | None, total: int):
    if progress is False or (progress is None and "PYTEST_CURRENT_TEST" in os.environ):
        return None  # off in tests unless asked for explicitly
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="smc", unit="tok", delay=0 if progress else 2.0, leave=False)
