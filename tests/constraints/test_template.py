"""Templates: exact prefixes against brute force, laws, SMC against enumeration, a real LM."""

from __future__ import annotations

import itertools
import re
import time

import numpy as np
import pytest

import potentia as pt
from potentia.models import enumerate_target, random_ngram
from potentia.smc import smc
from potentia.testing import assert_gof, assert_potential_laws, smc_exact_draws


def finite(strings: list[str]) -> pt.Potential:
    """A regex hole accepting exactly ``strings``."""
    return pt.regex("|".join(f"(?:{re.escape(s)})" for s in strings))


# (template, {hole: finite language}); the second and third have holes whose language
# contains the next literal, the third has two adjacent holes.
CASES = [
    ("<{a}|{b}>", {"a": ["", "x", "xy"], "b": ["y", "yy"]}),
    ("{a}|{b}|", {"a": ["x", "x|", "|x|", "|"], "b": ["", "|", "y"]}),
    ("x{a}{b}", {"a": ["", "x", "xy"], "b": ["y", "yx", ""]}),
]


def language(text: str, holes: dict[str, list[str]]) -> set[bytes]:
    names = list(holes)
    return {
        text.format(**dict(zip(names, vals))).encode()
        for vals in itertools.product(*(holes[n] for n in names))
    }


@pytest.mark.parametrize(("text", "holes"), CASES)
def test_prefix_viability_brute_force(text, holes):
    """For every byte string up to length 5 over the template's bytes (plus a stranger)."""
    tpl = pt.template(text, **{n: finite(v) for n, v in holes.items()})
    lang = language(text, holes)
    prefixes = {s[:i] for s in lang for i in range(len(s) + 1)}
    alphabet = sorted({b for s in lang for b in s} | {ord("z")})
    for n in range(5):
        for x in itertools.product(alphabet, repeat=n):
            x = bytes(x)
            lw = tpl.logw_next(list(x))
            want = np.full(257, -np.inf)
            if x in prefixes:
                for b in range(256):
                    if x + bytes([b]) in prefixes:
                        want[b] = 0.0
                want[256] = 0.0 if x in lang else -np.inf
            np.testing.assert_array_equal(lw, want, err_msg=f"{text!r} at {x!r}")
            assert (tpl.prefix(list(x)) == 0.0) == (x in prefixes)
            assert (tpl.complete(list(x)) == 0.0) == (x in lang)


@pytest.mark.parametrize(("text", "holes"), CASES)
def test_fields_and_parses(text, holes):
    tpl = pt.template(text, **{n: finite(v) for n, v in holes.items()})
    names = list(holes)
    for vals in itertools.product(*(holes[n] for n in names)):
        s = text.format(**dict(zip(names, vals)))
        parses = tpl.parses(s)
        assert dict(zip(names, vals)) in parses
        want = {
            tuple(v)
            for v in itertools.product(*(holes[n] for n in names))
            if text.format(**dict(zip(names, v))) == s
        }
        assert {tuple(p[n] for n in names) for p in parses} == want
        if len(want) == 1:
            assert tpl.fields(s) == dict(zip(names, vals))
        else:
            with pytest.raises(ValueError, match="ways"):
                tpl.fields(s)
    with pytest.raises(ValueError, match="does not match"):
        tpl.fields("zzz")


def test_laws_bytes_and_lifted():
    tpl = pt.template("{a}|{b}|", a=finite(["x", "x|", "|"]), b=pt.regex(r"y{0,2}"))
    lang = [b"x|y|", b"x||y|", b"|||", b"x|||"]
    ctxs = [list(s[:i]) for s in lang for i in range(len(s) + 1)] + [list(b"zx"), list(b"x|z")]
    # law 1 on the bytes that occur (the brute-force test covers all 256)
    assert_potential_laws(tpl, ctxs, valid=[list(s) for s in lang], tokens=list(b"x|yz\x00"))
    vocab = pt.Vocabulary([b"x", b"|", b"y", b"x|", b"|y|", b""])
    lifted = tpl.lift(vocab)
    tctx = [list(t) for n in range(3) for t in itertools.product(range(len(vocab)), repeat=n)]
    tctx += [[3, 4], [0, 1, 1, 2, 1], [0, 1, 4, 5], [1, 1, 1]]
    assert_potential_laws(lifted, tctx, valid=[[3, 4], [0, 1, 1, 2, 1], [1, 1, 1]])
    for c in tctx:  # the lifted weights are the byte weights of the concatenation
        assert lifted.prefix(c) == tpl.prefix(list(vocab.decode_bytes(c)))
        assert lifted.complete(c) == tpl.complete(list(vocab.decode_bytes(c)))


def test_composes_and_json_hole():
    tpl = pt.template(
        "Name: {name}\nAge: {age}\n",
        name=pt.regex(r"[A-Z][a-z]+"),
        age=pt.json({"type": "integer"}),
    )
    good = b"Name: Bob\nAge: 42\n"
    assert tpl.complete(list(good)) == 0.0
    assert tpl.fields(good.decode()) == {"name": "Bob", "age": "42"}
    assert tpl.prefix(list(b"Name: bob")) == -np.inf
    assert tpl.complete(list(b"Name: Bob\nAge: 4.5\n")) == -np.inf
    both = tpl & pt.excludes("Bob")
    assert both.complete(list(good)) == -np.inf
    assert both.complete(list(b"Name: Ann\nAge: 7\n")) == 0.0


@pytest.mark.parametrize(
    ("args", "kwargs", "err", "match"),
    [
        (("Age: {age}",), {}, ValueError, "missing \\['age'\\]"),
        (("Age",), {"age": pt.regex("1")}, ValueError, "not in `text`"),
        (("{a}{a}",), {"a": pt.regex("1")}, ValueError, "twice"),
        (("{a:3}",), {"a": pt.regex("1")}, ValueError, "format spec"),
        (("{0}",), {}, ValueError, "identifiers"),
        (("{a",), {"a": pt.regex("1")}, ValueError, "not a valid template"),
        (("{a}",), {"a": pt.ltl("F a", labels=["a"])}, TypeError, "hard byte-level"),
    ],
)
def test_bad_input(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        pt.template(*args, **kwargs)


def test_too_many_parses_is_refused():
    tpl = pt.template("{a}|{b}", a=pt.regex(r"[x|]*"), b=pt.regex(r"[x|]*"), max_parses=4)
    assert tpl.complete(list(b"x|x")) == 0.0
    with pytest.raises(ValueError, match="max_parses"):
        tpl.prefix(list(b"||||||||"))


def test_braces_are_literal():
    tpl = pt.template("{{{v}}}", v=pt.regex("[0-9]"))
    assert tpl.complete(list(b"{7}")) == 0.0 and tpl.fields("{7}") == {"v": "7"}


@pytest.mark.parametrize("sampler", ["direct", "awrs"])
def test_smc_matches_enumeration(sampler):
    """SMC on a toy token LM × the lifted template against the exact posterior (χ²)."""
    vocab = pt.Vocabulary([b"a", b"b", b"-", b"ab", b"b-"])
    tpl = pt.template("{x}-{y}", x=pt.regex(r"[ab]{1,2}"), y=pt.regex(r"a|bb?"))
    lm = random_ngram(np.random.default_rng(1), vocab, order=2, concentration=0.3)
    lifted = tpl.lift(vocab)
    target = lm * lifted
    exact = enumerate_target(target, 4)
    assert exact.log_z > np.log(0.15) and len(exact.posterior) > 20
    make = (
        (lambda: pt.DirectSampler(target)) if sampler == "direct" else (lambda: pt.AWRS(lm, lifted))
    )
    # LM x hard constraint: Ẑ <= 1, so the rejection-corrected draws are exact
    runs = (smc(make(), 4, 4, rng=seed) for seed in range(400))
    draws = smc_exact_draws(runs, np.random.default_rng(1), log_bound=0.0)
    assert len(draws) > 50
    assert_gof(draws, exact.posterior, false_alarm=1e-4)
    texts = {vocab.decode(list(x)) for x in exact.posterior}
    for t in texts:
        f = tpl.fields(t)
        assert t == f"{f['x']}-{f['y']}"


@pytest.mark.real_model
def test_smollm_template(smollm):
    tpl = pt.template(
        "Name: {name}\nAge: {age}\n",
        name=pt.regex(r"[A-Z][a-z]{1,8}"),
        age=pt.json({"type": "integer", "minimum": 0, "maximum": 120}),
    )
    vocab = smollm.vocab
    lifted = tpl.lift(vocab)
    # single-token checks agree with the byte level on random tokens
    state = lifted.init_state(1)
    for t in (b"Name", b":", b" A"):
        state = state.advance(np.array([vocab.index[t]]))
    toks = np.random.default_rng(0).integers(0, len(vocab), size=200)
    got = state.logw_tokens(np.zeros(200, dtype=np.int64), toks)
    base = list(vocab.decode_bytes(state.contexts[0]))
    want = [tpl.prefix(base + list(vocab.tokens[t])) for t in toks]
    np.testing.assert_array_equal(got, want)
    t0 = time.perf_counter()
    mask = state.allowed()[0]
    mask_s = time.perf_counter() - t0
    np.testing.assert_array_equal(mask[toks], np.array(want) == 0.0)
    t0 = time.perf_counter()
    out = pt.sample(smollm, "A person:\n", tpl, particles=2, max_tokens=16, seed=0)
    run_s = time.perf_counter() - t0
    print(f"smollm template: full mask {mask_s:.2f} s, sample 2x16 {run_s:.1f} s")
    for f, s, t in zip(tpl.fields_of(out), out.status, out.texts):
        if s == "finished":
            assert tpl.complete(list(t.encode())) == 0.0
            assert re.fullmatch(r"[A-Z][a-z]{1,8}", f["name"]) and 0 <= int(f["age"]) <= 120
        else:
            assert f is None
    assert run_s < 120
