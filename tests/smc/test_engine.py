"""SMC engine: Ẑ and posterior against exactly enumerated targets.

False-alarm budget. Each hypothesis example runs one statistical test:
- Ẑ test: mean of R = 200 independent Ẑ within 4 standard errors of the exact Z
  (two-sided normal tail 6.3e-5 per example; 200 examples → ≤ 1.3 % family-wide). The
  standard error has a floor of Z / R in quadrature: events rarer than 1/R are usually
  unseen in R runs, and an empirical variance of zero says nothing about them, so the test
  claims to resolve relative deviations of Z down to 1/R, not below;
- χ² test on rejection-corrected exact draws (potentia.testing.smc_exact_draws) at
  α = 1e-4 per example; 200 examples → ≤ 2 % family-wide.
Hypothesis is derandomized and every run is seeded, so the suite is deterministic: a
failure is a reproducible counter-example, never flakiness.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.models import DFA, FiniteLanguage, enumerate_target, random_ngram
from potentia.smc import smc
from potentia.testing import assert_gof, assert_mean, smc_exact_draws
from potentia.testing.strategies import soft_potentials, toy_problems

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCHEMES = ["multinomial", "stratified", "systematic", "residual"]


@SETTINGS
@given(
    problem=toy_problems(),
    n=st.sampled_from([1, 2, 4, 8]),
    scheme=st.sampled_from(SCHEMES),
    ess=st.sampled_from([0.0, 0.5, 1.0]),
    extra=st.sampled_from(["none", "twist", "critic"]),
    data=st.data(),
)
def test_log_z_unbiased(problem, n, scheme, ess, extra, data):
    twist = critic = None
    target = problem.target
    if extra == "twist":
        twist = data.draw(soft_potentials(problem.lm.vocab))
    elif extra == "critic":
        critic = data.draw(soft_potentials(problem.lm.vocab))
        target = target * critic
    exact = enumerate_target(target, problem.max_len)
    sampler = pt.DirectSampler(problem.target)
    R = 200
    zs = [
        np.exp(
            smc(
                sampler,
                n,
                problem.max_len,
                rng=seed,
                ess_threshold=ess,
                resampling=scheme,
                twist=twist,
                critic=critic,
            ).log_z
        )
        for seed in range(R)
    ]
    Z = np.exp(exact.log_z)
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / R)


@SETTINGS
@given(
    problem=toy_problems(),
    n=st.sampled_from([1, 2, 4, 8]),
    scheme=st.sampled_from(SCHEMES),
    ess=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_posterior_chi2(problem, n, scheme, ess):
    # LM × hard constraint: every increment is a next-token mass ≤ 1, so Ẑ ≤ 1 = C.
    assume(problem.constraint is None or problem.constraint.hard)
    exact = enumerate_target(problem.target, problem.max_len)
    assume(exact.log_z > np.log(0.25))
    sampler = pt.DirectSampler(problem.target)
    runs = (
        smc(sampler, n, problem.max_len, rng=seed, ess_threshold=ess, resampling=scheme)
        for seed in range(300)
    )
    draws = smc_exact_draws(runs, np.random.default_rng(1), log_bound=0.0)
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def _problem():
    rng = np.random.default_rng(3)
    lm = random_ngram(rng, 3, order=2, eos_boost=1.5)
    dfa = DFA(lm.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    return lm, dfa


def test_same_seed_same_result_and_different_seeds_differ():
    lm, dfa = _problem()
    s = pt.DirectSampler(lm * dfa)
    a = smc(s, 8, 5, rng=7)
    b = smc(s, 8, 5, rng=7)
    assert a.contexts == b.contexts and np.array_equal(a.log_weights, b.log_weights)
    outs = {tuple(map(tuple, smc(s, 8, 5, rng=k).contexts)) for k in range(5)}
    assert len(outs) > 1


def test_generator_and_seed_agree():
    lm, dfa = _problem()
    s = pt.DirectSampler(lm * dfa)
    a = smc(s, 4, 5, rng=11)
    b = smc(s, 4, 5, rng=np.random.default_rng(11))
    assert a.contexts == b.contexts


def test_all_dead_returns_reason():
    lm, _ = _problem()
    never = DFA(lm.vocab, np.array([[-1, -1, -1], [1, 1, 1]]), [1])  # accept state unreachable
    r = smc(pt.DirectSampler(lm * never), 4, 3, rng=0)
    assert r.all_dead and r.log_z == -np.inf and r.posterior == {}
    assert "died" in r.message and "zero" in r.message
    with pytest.raises(ValueError, match="every particle died"):
        r.resample(np.random.default_rng(0), 3)


def test_truncate_reports_and_excludes():
    lm, dfa = _problem()
    r = smc(pt.DirectSampler(lm * dfa), 16, 1, rng=0, on_max_tokens="truncate")
    assert set(r.status) <= {"finished", "truncated"} | {
        s for s in r.status if s.startswith("dead")
    }
    assert "truncated" in r.status
    assert all(len(c) <= 1 for c in r.contexts)
    for text in r.posterior:  # only finished strings
        assert any(t == text and s == "finished" for t, s in zip(r.texts, r.status))


def test_force_eos_targets_length_bounded_target():
    lm, dfa = _problem()
    exact = enumerate_target(lm * dfa, 2)
    zs = [np.exp(smc(pt.DirectSampler(lm * dfa), 4, 2, rng=s).log_z) for s in range(400)]
    assert_mean(zs, np.exp(exact.log_z), sigmas=4.0)


def test_diagnostics():
    lm, dfa = _problem()
    r = smc(pt.DirectSampler(lm * dfa), 8, 6, rng=0, ess_threshold=1.0)
    assert r.n_steps >= 1 and len(r.ess_history) == r.n_steps
    assert r.resampled_at and r.target_evals > 0 and r.wall_time >= 0
    assert "smc" in r.method and r.summary()
    assert abs(sum(r.posterior.values()) - 1) < 1e-9


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_particles": 0}, ValueError, "n_particles"),
        ({"n_particles": 2.5}, TypeError, "n_particles"),
        ({"n_particles": True}, TypeError, "n_particles"),
        ({"max_tokens": 0}, ValueError, "max_tokens"),
        ({"ess_threshold": 1.5}, ValueError, "ess_threshold"),
        ({"ess_threshold": -0.1}, ValueError, "ess_threshold"),
        ({"resampling": "bogus"}, ValueError, "resampling"),
        ({"on_max_tokens": "stop"}, ValueError, "on_max_tokens"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    lm, dfa = _problem()
    args = {"n_particles": 4, "max_tokens": 3} | kwargs
    with pytest.raises(exc, match=match):
        smc(pt.DirectSampler(lm * dfa), **args)


def test_nan_from_potential_is_an_error():
    lm, _ = _problem()

    class Bad(pt.Potential):
        vocab = lm.vocab

        def _prefix(self, context):
            return 0.0

        def _complete(self, context):
            return float("nan")

    with pytest.raises(ValueError, match="NaN"):
        smc(pt.DirectSampler(lm * Bad()), 2, 2, rng=0)


def test_init_step_finish_compose_to_smc():
    """The explicit particle state and its functions reproduce ``smc()`` draw for draw."""
    from potentia.smc.engine import SMCKernel, finish, init, step, stop
    from potentia.smc.resampling import get_scheme

    lm = random_ngram(np.random.default_rng(3), 3, order=2)
    target = lm * FiniteLanguage(lm.vocab, [[0, 1], [1, 2, 0], [2], [2, 2, 1]])
    sampler = pt.DirectSampler(target)
    ref = smc(sampler, 6, 4, rng=11, ess_threshold=0.9, resampling="systematic")
    kernel = SMCKernel(sampler, ess_threshold=0.9, resample=get_scheme("systematic"))
    rng = np.random.default_rng(11)
    p = init(kernel, 6)
    while len(p.live) and p.step < 4:
        step(kernel, p, rng)
    if len(p.live):
        stop(kernel, p, "force_eos")
    got = finish(kernel, p)
    assert got.contexts == ref.contexts and got.status == ref.status
    assert np.array_equal(got.log_weights, ref.log_weights) and got.log_z == ref.log_z
    assert got.resampled_at == ref.resampled_at and len(ref.resampled_at) > 0


# ----- budgets, interrupts and dead-run messages (issue 11) ---------------------------------
def _long_problem():
    """Strings of exactly 6 tokens: a run of ``max_tokens=6`` needs 6 steps plus EOS."""
    lm = random_ngram(np.random.default_rng(4), 3, order=2)
    lang = FiniteLanguage(lm.vocab, [[0, 1, 2, 0, 1, 2], [2, 2, 1, 0, 0, 1]])
    return lm * lang


def test_max_lm_calls_stops_and_says_so():
    target = _long_problem()
    r = smc(pt.DirectSampler(target), 4, 6, rng=0, max_lm_calls=2)
    assert r.n_steps == 2 and r.status == ["truncated"] * 4
    assert r.extra["stopped_by"].startswith("`max_lm_calls`=2 ran out after 2 steps")
    assert r.message.startswith("stopped early: `max_lm_calls`=2") and "raise" in r.message
    assert all(len(c) == 2 for c in r.contexts) and len(r.unfinished) == 4


def test_time_limit_stops_and_says_so():
    r = smc(pt.DirectSampler(_long_problem()), 4, 6, rng=0, time_limit=1e-9)
    assert r.n_steps == 0 and r.status == ["truncated"] * 4
    assert "`time_limit`=1e-09 s ran out" in r.message and r.log_z == -np.inf


def test_unreached_budgets_change_nothing():
    """A budget that does not run out leaves the run draw for draw as it was."""
    target = _long_problem()
    ref = smc(pt.DirectSampler(target), 5, 6, rng=3, ess_threshold=0.9)
    got = smc(pt.DirectSampler(target), 5, 6, rng=3, ess_threshold=0.9, max_lm_calls=7,
              time_limit=1e6)  # fmt: skip
    assert got.contexts == ref.contexts and got.status == ref.status
    assert np.array_equal(got.log_weights, ref.log_weights) and got.log_z == ref.log_z
    assert "stopped_by" not in got.extra and not got.message.startswith("stopped")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"time_limit": 0}, ValueError, "`time_limit`"),
        ({"time_limit": "5"}, TypeError, "`time_limit`"),
        ({"max_lm_calls": 0}, ValueError, "`max_lm_calls`"),
        ({"max_lm_calls": 2.0}, TypeError, "`max_lm_calls`"),
    ],
)
def test_bad_budgets(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        smc(pt.DirectSampler(_long_problem()), 2, 3, **kwargs)


def test_keyboard_interrupt_returns_the_partial_result():
    target = _long_problem()

    class Interrupting(pt.DirectSampler):
        calls = 0

        def sample(self, state, rng):
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return super().sample(state, rng)

    r = smc(Interrupting(target), 4, 6, rng=0)
    assert r.extra["stopped_by"] == "interrupted (KeyboardInterrupt) at step 2"
    assert r.status == ["truncated"] * 4 and all(len(c) == 2 for c in r.contexts)


def test_dead_run_names_dominant_cause_counts_and_fix():
    target = _long_problem()
    r = smc(pt.DirectSampler(target), 4, 3, rng=0)  # the strings need 6 tokens
    assert r.all_dead
    assert "4 of 4 particles: EOS has weight zero at max_tokens" in r.message
    assert "raise `max_tokens`" in r.message and "Result.unfinished" in r.message
    assert [len(t) for t, _ in r.unfinished] == [3] * 4  # the prefixes are kept
    assert all(s.startswith("dead") for _, s in r.unfinished)


def test_dead_run_counts_mixed_causes():
    from potentia.smc.engine import _message

    status = ["dead: the target has no allowed next token at step 2"] * 2 + [
        "dead: EOS has weight zero at max_tokens",
        "dead: the target has no allowed next token at step 5",
    ]
    msg = _message(status, 7, -np.inf)
    first, second = msg.split("; ")[:2]
    assert first.endswith("3 of 4 particles: the target has no allowed next token (every next "
                          "token is forbidden by the constraint or has LM probability zero: "
                          "check that the constraint can be completed from these prefixes "
                          "under this tokenizer (see `Result.unfinished`))")  # fmt: skip
    assert second.startswith("1 of 4 particles: EOS has weight zero at max_tokens")


def test_dead_run_says_where_a_json_string_stood():
    """A structured constraint names where unfinished particles stand (issue 11, item 6)."""
    from potentia.models import ToyLM

    vocab = pt.Vocabulary([b'{"a": "', b"x", b'"}', b"\\"])
    lm = random_ngram(np.random.default_rng(0), vocab, order=1)
    toy = ToyLM(lm)
    c = pt.json({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    # with the budget guard (the default) no value fits in one token: all die at once
    assert pt.sample(toy, (), c, particles=4, max_tokens=1, seed=0).log_z == -np.inf
    r = pt.sample(toy, (), c, particles=4, max_tokens=1, seed=0, budget_guard=False)
    assert r.log_z == -np.inf
    assert "4 of 4 particles: EOS has weight zero at max_tokens, inside a JSON string" in r.message
    assert "raise `max_tokens`" in r.message  # the fix is still found for the refined cause
    state = c.init_state(3)
    for row in zip(b'{"a": "x\\', b'{"a": "xyz', b"{        "):
        state = state.advance(np.array(row))
    assert state.where() == [
        "inside an escape of a JSON string",
        "inside a JSON string",
        "inside an unclosed JSON value",
    ]
    assert pt.regex("ab").init_state(2).where() == [None, None]  # no description: none given


def test_dead_run_says_no_value_fits_in_max_tokens():
    """The budget guard's deaths are named in the user's terms, with counts (issue 11)."""
    from potentia.models import ToyLM

    vocab = pt.Vocabulary([b'{"a": "', b"x", b'"}', b"\\"])
    toy = ToyLM(random_ngram(np.random.default_rng(0), vocab, order=1))
    c = pt.json({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    r = pt.sample(toy, (), c, particles=4, max_tokens=1, seed=0)
    assert r.log_z == -np.inf
    want = "no value of the constraint fits in max_tokens=1: the shortest one found needs 2 tokens"
    assert r.status == [f"dead: {want} at step 0"] * 4
    assert f"4 of 4 particles: {want} (raise `max_tokens` to at least" in r.message
    assert "no allowed next token" not in r.message
    ok = pt.sample(toy, (), c, particles=4, max_tokens=2, seed=0)
    assert ok.log_z > -np.inf and all(s == "finished" for s in ok.status)
    assert ok.texts == ['{"a": ""}'] * 4  # the guard closed the value the short way
    # a death where the guard is not tight keeps its cause: the guard did not do it
    from dataclasses import replace

    from potentia.api import _explain_guard_deaths
    from potentia.constraints.completion import BudgetGuard

    lc = c.lift(vocab)
    dead = "dead: the target has no allowed next token at step 1"
    fake = replace(r, contexts=[[0]] * 4, status=[dead] * 4)
    assert _explain_guard_deaths(fake, BudgetGuard(lc, vocab, 10), 10).status == [dead] * 4
    again = _explain_guard_deaths(fake, BudgetGuard(lc, vocab, 1), 1)  # tight, no token fits
    assert again.status[0].startswith("dead: the value could no longer be closed within")


def test_a_hard_potential_with_other_weights_mid_run_is_an_error():
    """Checked where the weight is read, not only at the empty string (issue 11, item 5)."""

    class Sloppy(pt.Potential):
        hard = True

        def __init__(self, vocab):
            self.vocab = vocab

        def _prefix(self, context):
            return 0.0 if len(context) < 1 else -0.5  # wrong: a "hard" weight of 0.61

        def _complete(self, context):
            return 0.0

    lm = random_ngram(np.random.default_rng(0), 3, order=1)
    target = lm * Sloppy(lm.vocab)
    with pytest.raises(ValueError, match=r"declared hard.*-0\.5.*hard = False"):
        smc(pt.DirectSampler(target), 4, 3, rng=0)
    with pytest.raises(ValueError, match=r"hard constraint must return 0 or -inf"):
        smc(pt.AWRS(lm, Sloppy(lm.vocab)), 4, 3, rng=0)
