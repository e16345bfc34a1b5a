"""The front door: potentia.sample."""

import numpy as np
import pytest

import potentia as pt
from potentia.models import DFA, FiniteLanguage, ToyLM, enumerate_target, random_ngram
from potentia.potentials import Vocabulary


def _model():
    lm = random_ngram(np.random.default_rng(0), Vocabulary([b"a", b"b", b"c"]), 2)
    return ToyLM(lm)


def test_sample_with_toy_model_and_constraint():
    m = _model()
    dfa = DFA(m.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    out = pt.sample(m, "ab", dfa, particles=8, max_tokens=4, seed=0, progress=False)
    assert out.posterior and not out.all_dead
    assert all(dfa.complete(c) == 0 for c, s in zip(out.contexts, out.status) if s == "finished")


def test_sample_lifts_byte_constraints():
    m = _model()
    c = FiniteLanguage(Vocabulary.bytes256(), [tuple(b"ab"), tuple(b"ba")])
    out = pt.sample(m, "", c, particles=8, max_tokens=3, seed=0, progress=False)
    assert set(out.posterior) <= {"ab", "ba"}


def test_sample_log_z_matches_exact_on_average():
    m = _model()
    dfa = DFA(m.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    exact = enumerate_target(m.potential("a") * dfa, 3)
    zs = [
        np.exp(pt.sample(m, "a", dfa, particles=4, max_tokens=3, seed=s, progress=False).log_z)
        for s in range(300)
    ]
    Z = np.exp(exact.log_z)
    assert abs(np.mean(zs) - Z) <= 4 * np.std(zs, ddof=1) / np.sqrt(300) + Z / 300


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"particles": 0}, ValueError, "`particles`"),
        ({"particles": 1.5}, TypeError, "`particles`"),
        ({"time_limit": -1}, ValueError, "`time_limit`"),
        ({"max_lm_calls": 0}, ValueError, "`max_lm_calls`"),
        ({"max_attempts": 5}, ValueError, "`max_attempts`"),
        ({"max_tokens": -1}, ValueError, "max_tokens"),
        ({"ess_threshold": 2}, ValueError, "ess_threshold"),
        ({"resampling": "x"}, ValueError, "resampling"),
        ({"method": "mcmc"}, ValueError, "method"),
        ({"sampler": "nope"}, ValueError, "sampler"),
        ({"seed": "zero"}, TypeError, "seed"),
    ],
)
def test_bad_arguments_before_any_lm_call(kwargs, exc, match):
    class Exploding(ToyLM):
        def potential(self, prompt=()):
            raise AssertionError("the model was touched before validation")

    m = _model()
    with pytest.raises(exc, match=match):
        pt.sample(Exploding(m.lm), "", None, progress=False, **kwargs)


def test_bad_model_and_constraint():
    with pytest.raises(TypeError, match="model"):
        pt.sample(object(), "x")
    with pytest.raises(TypeError, match="constraint"):
        pt.sample(_model(), "", "a regex string", progress=False)
    with pytest.raises(ValueError, match="prompt"):
        pt.sample(_model().lm, "a prompt")


def test_trie_methods_through_the_front_door():
    m = _model()
    c = FiniteLanguage(m.vocab, [(0, 1), (1,), (2, 2)])
    exact = enumerate_target(m.potential("a") * c, 3)
    for method in ("asap", "cars", "lcd"):
        out = pt.sample(m, "a", c, method=method, particles=50, max_tokens=3, seed=0)
        assert len(out.texts) == 50 and set(out.posterior) <= set(exact.text_posterior(m.vocab))
    with pytest.raises(ValueError, match="hard"):
        pt.sample(m, "a", None, method="cars")
    with pytest.raises(ValueError, match="method"):
        pt.sample(m, "a", c, method="gibbs")


def test_budgets_reach_every_engine_through_the_front_door():
    m = _model()
    dfa = DFA(m.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    out = pt.sample(m, "a", dfa, particles=4, max_tokens=8, max_lm_calls=1, progress=False)
    assert out.extra["stopped_by"].startswith("`max_lm_calls`=1") and out.n_steps == 1
    out = pt.sample(m, "a", dfa, particles=4, max_tokens=8, time_limit=1e-9)
    assert "`time_limit`" in out.message
    for method in ("asap", "cars", "lcd"):
        out = pt.sample(m, "a", dfa, method=method, particles=10**6, max_attempts=3)
        assert out.extra["stopped_by"].startswith("`max_attempts`=3")
        out = pt.sample(m, "a", dfa, method=method, particles=10**6, max_lm_calls=2)
        assert out.extra["stopped_by"].startswith("`max_lm_calls`=2")


def test_trie_methods_default_lm_call_budget(monkeypatch):
    seen = {}

    def spy(model, prompt, constraint, **kw):
        seen.update(kw)
        return "result"

    monkeypatch.setitem(pt.api.METHODS, "cars", spy)
    m = _model()
    dfa = DFA(m.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    assert pt.sample(m, "a", dfa, method="cars", particles=3, max_tokens=5) == "result"
    assert seen["max_lm_calls"] == pt.api.TRIE_LM_CALLS_PER_TOKEN * 3 * 5
    assert seen["time_limit"] is None and seen["max_attempts"] is None
    pt.sample(m, "a", dfa, method="cars", max_lm_calls=7, time_limit=2.5, progress=True)
    assert (seen["max_lm_calls"], seen["time_limit"], seen["progress"]) == (7, 2.5, True)


@pytest.mark.real_model
def test_cars_on_an_unreachable_regex_returns_quickly_with_the_budget(smollm):
    """Issue 11, reproduction 2: no string fits max_tokens=2; CARS used to run for minutes.

    The default LM-call budget (not a wall-clock assertion, which a busy CI machine would
    break) is what ends the run: 32 calls, a few seconds on an idle CPU.
    """
    out = pt.sample(smollm, "Write one long word:", pt.regex(r" [a-z]{30}\."), method="cars",
                    max_tokens=2)  # fmt: skip
    assert out.texts == [] and out.extra["stopped_by"].startswith("`max_lm_calls`=32 ran out")
    assert "raise `max_lm_calls`, or use method='smc'" in out.message


def test_result_json_round_trip():
    m = _model()
    dfa = DFA(m.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    out = pt.sample(m, "a", dfa, particles=6, max_tokens=3, seed=1, on_max_tokens="truncate")
    out.texts[0] = "-inf"  # a text that looks like a number stays a text
    text = out.to_json()
    import json

    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    back = pt.Result.from_json(text)
    assert back.texts == out.texts and back.contexts == out.contexts
    assert back.status == out.status and back.log_z == out.log_z
    assert np.array_equal(back.log_weights, out.log_weights) and back.posterior == out.posterior
    assert back.message == out.message and back.ess_history == out.ess_history
    dead = pt.sample(m, "a", dfa, particles=2, max_tokens=8, time_limit=1e-9)
    back = pt.Result.from_json(dead.to_json())
    assert back.log_z == -np.inf and back.extra == dead.extra and back.unfinished == dead.unfinished
    cars = pt.sample(m, "a", dfa, method="cars", particles=3, max_tokens=3)
    back = pt.Result.from_json(cars.to_json())
    assert back.extra["lm_calls_after"] == cars.extra["lm_calls_after"].tolist()
    with pytest.raises(ValueError, match="`text`"):
        pt.Result.from_json("{}")
    with pytest.raises(ValueError, match="`text` is not JSON"):
        pt.Result.from_json("not json")


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_targets_the_tempered_lm_exactly(temperature):
    """log Ẑ is unbiased for Z of LM(x)^(1/T) · constraint(x) (mean of 300 runs, 4 s.e.)."""
    m = _model()
    dfa = DFA(m.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    exact = enumerate_target(m.potential("a") ** (1 / temperature) * dfa, 3)
    untempered = enumerate_target(m.potential("a") * dfa, 3)
    assert abs(exact.log_z - untempered.log_z) > 0.05  # the test can tell them apart
    zs = [
        np.exp(
            pt.sample(m, "a", dfa, particles=4, max_tokens=3, seed=s, temperature=temperature).log_z
        )
        for s in range(300)
    ]
    Z = np.exp(exact.log_z)
    assert abs(np.mean(zs) - Z) <= 4 * np.std(zs, ddof=1) / np.sqrt(300) + Z / 300
    with pytest.raises(ValueError, match="`temperature`"):
        pt.sample(m, "a", dfa, method="cars", temperature=temperature)


@pytest.mark.real_model
def test_chat_prompts_use_the_chat_template(smollm):
    msgs = [{"role": "user", "content": "Name a colour."}]
    ids = smollm.prompt_ids(msgs)
    assert ids == smollm.prompt_ids("Name a colour.", chat=True)
    assert ids != smollm.prompt_ids("Name a colour.")
    assert "<|im_start|>assistant" in smollm.tokenizer.decode(ids)
    c = pt.regex(r"[A-Z][a-z]+\.")
    a = pt.sample(smollm, "Name a colour.", c, particles=2, max_tokens=5, seed=0, chat=True)
    b = pt.sample(smollm, msgs, c, particles=2, max_tokens=5, seed=0)
    assert a.texts == b.texts and np.allclose(a.log_weights, b.log_weights)
    system = [{"role": "system", "content": "Answer in French."}, *msgs]
    assert smollm.prompt_ids(system) != ids


def test_top_k_one_is_the_greedy_string():
    lm = random_ngram(np.random.default_rng(5), 3, order=2, eos_boost=1.0)  # greedy: a c b
    toy = ToyLM(lm)
    out = pt.sample(toy, (), None, particles=4, max_tokens=3, seed=0, top_k=1)
    ctx = []
    for _ in range(4):  # greedy decoding by hand
        t = int(np.argmax(lm.logw_next(ctx)))
        if t == len(lm.vocab):
            break
        ctx.append(t)
    finished = {tuple(c) for c, s in zip(out.contexts, out.status) if s == "finished"}
    assert len(ctx) == 3 and finished == {tuple(ctx)}
    wide = pt.sample(toy, (), None, particles=64, max_tokens=3, seed=0, top_p=1.0)
    assert len(set(map(tuple, wide.contexts))) > 1
