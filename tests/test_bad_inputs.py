"""The bad-input table (issue 11, item 8): every row goes through the public API.

Each row asserts the exception type, that the message names the public argument (in
backticks) and says what to do, and that the model ran no forward pass: a pre-hook on the
tiny transformers model of the conftest fixtures counts every forward.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import potentia as pt
from potentia.models import DFA, ToyLM, random_ngram


@pytest.fixture(scope="module")
def lm(tiny_tokenizer, make_tiny_model):
    """A potentia.LM on a random tiny Llama (context window 64 tokens), forwards counted."""
    model = pt.LM(make_tiny_model("llama", len(tiny_tokenizer)), tiny_tokenizer, name="tiny")
    model.forwards = 0

    def hook(*_):
        model.forwards += 1

    handle = model.model.register_forward_pre_hook(hook)
    yield model
    handle.remove()


class HardBut(pt.Potential):
    """A custom potential declared hard whose weights are ``value`` (bytes alphabet)."""

    hard = True
    vocab = pt.Vocabulary.bytes256()

    def __init__(self, value: float) -> None:
        self.value = value

    def _prefix(self, context):
        return self.value

    def _complete(self, context):
        return self.value


def _toy_dfa():
    toy = ToyLM(random_ngram(np.random.default_rng(0), pt.Vocabulary([b"a", b"b"]), 2))
    return DFA(toy.vocab, np.array([[1, 0], [1, 1]]), [1])


def _soft():
    return pt.predicate(lambda s: 0.5 if "a" in s else 1.0, soft=True)


def _plain_result():
    return pt.Result([[]], [""], np.zeros(1), 0.0, ["finished"])


LONG = "the cat sat on the mat. " * 12  # > 64 tokens of the tiny tokenizer
MID = "the cat sat on the mat. " * 3  # fits alone, not with 40 more tokens

#: (row id, call(lm), exception type, what the message must contain: the argument, the fix)
TABLE = [
    # ----- pt.sample: sizes and numbers
    ("particles=0", lambda m: pt.sample(m, "x", particles=0), ValueError, ["`particles`", ">= 1"]),
    ("top_k=0", lambda m: pt.sample(m, "x", top_k=0), ValueError, ["`top_k`", "int >= 1"]),
    ("top_p=1.5", lambda m: pt.sample(m, "x", top_p=1.5), ValueError, ["`top_p`", "(0, 1]"]),
    ("top_k with lcd", lambda m: pt.sample(m, "x", pt.regex("a"), method="lcd", top_k=3),
     ValueError, ["`top_k`", "method='smc'"]),
    ("chat='yes'", lambda m: pt.sample(m, "x", chat="yes"), TypeError, ["`chat`", "True or False"]),
    ("chat with messages", lambda m: pt.sample(m, [{"role": "user", "content": "x"}], chat=True),
     TypeError, ["`chat=True`", "prompt text"]),
    ("bad message", lambda m: pt.sample(m, [{"role": "user"}]), ValueError,
     ["`prompt[0]`", "'content'"]),
    ("particles=2.5", lambda m: pt.sample(m, "x", particles=2.5), TypeError, ["`particles`", "int"]),
    ("particles=True", lambda m: pt.sample(m, "x", particles=True), TypeError, ["`particles`", "int"]),
    ("max_tokens=0", lambda m: pt.sample(m, "x", max_tokens=0), ValueError, ["`max_tokens`", ">= 1"]),
    ("max_tokens='9'", lambda m: pt.sample(m, "x", max_tokens="9"), TypeError, ["`max_tokens`", "int"]),
    ("max_tokens=10**7", lambda m: pt.sample(m, "x", max_tokens=10**7), ValueError,
     ["`max_tokens`", "context window", "max_tokens < 64"]),
    ("prompt too long", lambda m: pt.sample(m, LONG, max_tokens=4), ValueError,
     ["`prompt`", "context", "shorten"]),
    ("prompt + max_tokens too long", lambda m: pt.sample(m, MID, max_tokens=40), ValueError,
     ["`prompt`", "`max_tokens`", "max_tokens <="]),
    ("prompt=123", lambda m: pt.sample(m, 123), TypeError, ["`prompt`", "pass the prompt text"]),
    ("ess_threshold=2", lambda m: pt.sample(m, "x", ess_threshold=2), ValueError,
     ["`ess_threshold`", "[0, 1]"]),
    ("ess_threshold='x'", lambda m: pt.sample(m, "x", ess_threshold="x"), TypeError,
     ["`ess_threshold`", "number"]),
    ("resampling='bogus'", lambda m: pt.sample(m, "x", resampling="bogus"), ValueError,
     ["`resampling`", "multinomial"]),
    ("method='mcmc'", lambda m: pt.sample(m, "x", method="mcmc"), ValueError, ["`method`", "smc"]),
    ("sampler='nope'", lambda m: pt.sample(m, "x", sampler="nope"), ValueError, ["`sampler`", "auto"]),
    ("seed='zero'", lambda m: pt.sample(m, "x", seed="zero"), TypeError, ["`seed`", "int"]),
    ("on_max_tokens='stop'", lambda m: pt.sample(m, "x", on_max_tokens="stop"), ValueError,
     ["`on_max_tokens`", "force_eos"]),
    ("time_limit=0", lambda m: pt.sample(m, "x", time_limit=0), ValueError, ["`time_limit`", "> 0"]),
    ("time_limit='5'", lambda m: pt.sample(m, "x", time_limit="5"), TypeError, ["`time_limit`", "number"]),
    ("max_lm_calls=0", lambda m: pt.sample(m, "x", max_lm_calls=0), ValueError,
     ["`max_lm_calls`", ">= 1"]),
    ("max_lm_calls=1.5", lambda m: pt.sample(m, "x", max_lm_calls=1.5), TypeError,
     ["`max_lm_calls`", "int"]),
    ("max_attempts with smc", lambda m: pt.sample(m, "x", max_attempts=3), ValueError,
     ["`max_attempts`", "`max_lm_calls` or `time_limit`"]),
    ("max_attempts=0", lambda m: pt.sample(m, "x", pt.regex("a"), method="cars", max_attempts=0),
     ValueError, ["`max_attempts`", ">= 1"]),
    ("progress='yes'", lambda m: pt.sample(m, "x", progress="yes"), TypeError,
     ["`progress`", "True, False or None"]),
    ("temperature=0", lambda m: pt.sample(m, "x", temperature=0), ValueError,
     ["`temperature`", "> 0"]),
    ("temperature with cars", lambda m: pt.sample(m, "x", pt.regex("a"), method="cars",
     temperature=0.7), ValueError, ["`temperature`", "use method='smc'"]),
    # ----- pt.sample: model, constraint, critic, twist
    ("model=object()", lambda m: pt.sample(object(), "x"), TypeError, ["`model`", "LM.default()"]),
    ("Potential model with a prompt", lambda m: pt.sample(_toy_dfa(), "x"), ValueError,
     ["`model`", "prompt=None"]),
    ("constraint is a str", lambda m: pt.sample(m, "x", "a+"), TypeError,
     ["`constraint`", "potentia.regex(...)"]),
    ("cars without constraint", lambda m: pt.sample(m, "x", method="cars"), ValueError,
     ["`constraint`", "method='smc'"]),
    ("cars with a soft constraint", lambda m: pt.sample(m, "x", _soft(), method="cars"),
     ValueError, ["hard `constraint`", "method='smc'"]),
    ("constraint on another vocabulary", lambda m: pt.sample(m, "x", _toy_dfa()), ValueError,
     ["`constraint`", "lift"]),
    ("critic on another vocabulary", lambda m: pt.sample(m, "x", critic=_toy_dfa()), ValueError,
     ["`critic`", "lift"]),
    ("twist is not a potential", lambda m: pt.sample(m, "x", twist="psi"), TypeError,
     ["`twist`", "Potential"]),
    ("hard potential weight -0.5", lambda m: pt.sample(m, "x", HardBut(-0.5)), ValueError,
     ["`constraint`", "declared hard", "0.0 (allowed) or -inf"]),
    ("hard potential weight NaN", lambda m: pt.sample(m, "x", HardBut(float("nan"))), ValueError,
     ["`constraint`", "returned NaN", "use -inf for weight zero"]),
    ("hard potential weight +inf", lambda m: pt.sample(m, "x", HardBut(np.inf), method="asap"),
     ValueError, ["`constraint`", "returned +inf", "use -inf for weight zero"]),
    # ----- constraint builders
    ("regex '('", lambda m: pt.regex("("), ValueError, ["`pattern`", "not a valid regular"]),
    ("regex a{2,1}", lambda m: pt.regex("a{2,1}"), ValueError, ["`pattern`", "min repeat"]),
    ("regex back-reference", lambda m: pt.regex(r"(a)\1"), ValueError,
     ["`pattern`", "rewrite it without"]),
    ("regex look-ahead", lambda m: pt.regex(r"(?=a)a"), ValueError, ["`pattern`", "rewrite it"]),
    ("regex of an int", lambda m: pt.regex(123), TypeError, ["`pattern`", "as a str"]),
    ("regex flags='i'", lambda m: pt.regex("a", flags="i"), TypeError, ["`flags`", "re.IGNORECASE"]),
    ("regex flags=re.DEBUG", lambda m: pt.regex("a", flags=re.DEBUG), ValueError,
     ["`flags`", "drop the others"]),
    ("cfg without start", lambda m: pt.cfg(""), ValueError, ["`grammar`", "start: ..."]),
    ("cfg of an int", lambda m: pt.cfg(5), TypeError, ["`grammar`", "grammar text"]),
    ("json bad type", lambda m: pt.json({"type": "foo"}), ValueError, ["`schema`", "Fix the schema"]),
    ("json false", lambda m: pt.json(False), ValueError, ["`schema`", "language is empty"]),
    ("json not JSON", lambda m: pt.json("nope"), ValueError, ["`schema`", "not JSON"]),
    ("predicate not callable", lambda m: pt.predicate("x"), TypeError, ["`fn`", "pass a function"]),
    ("predicate level", lambda m: pt.predicate(len, level="suffix"), ValueError, ["`level`"]),
    ("predicate that raises", lambda m: pt.predicate(lambda s: s[0] == "a"), ValueError,
     ["empty text", "string index out of range"]),
    ("predicate returning 3", lambda m: pt.predicate(lambda s: 3), TypeError, ["returned 3"]),
    ("contains(5)", lambda m: pt.contains(5), TypeError, ["`terms[0]`", "pass strings"]),
    ("excludes('')", lambda m: pt.excludes(""), ValueError, ["`strings[0]`", "needs a character"]),
    ("length(-1)", lambda m: pt.length(-1), ValueError, ["`min`", ">= 0"]),
    # ----- stop strings and Result.values (issue 11, items 1 and 7)
    ("stop=''", lambda m: pt.sample(m, "x", stop=""), ValueError, ["`stop[0]`", "Remove it"]),
    ("stop=[]", lambda m: pt.sample(m, "x", stop=[]), ValueError,
     ["`stop`", "at least one stop string"]),
    ("stop=5", lambda m: pt.sample(m, "x", stop=5), TypeError, ["`stop`", "list of strings"]),
    ("stop=['\\n', 3]", lambda m: pt.sample(m, "x", stop=["\n", 3]), TypeError,
     ["`stop[1]`", "stop strings are str"]),
    ("stop with cars", lambda m: pt.sample(m, "x", pt.regex("a"), method="cars", stop=[""]),
     ValueError, ["`stop[0]`", "Remove it"]),
    ("values without parser", lambda m: _plain_result().values, ValueError,
     ["`parser`", "pt.json"]),
    ("from_json(parser=3)", lambda m: pt.Result.from_json(_plain_result().to_json(), parser=3),
     TypeError, ["`parser`", "callable"]),
]  # fmt: skip


def test_the_table_is_large_enough():
    assert len(TABLE) >= 40 and len({row[0] for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize(
    ("call", "exc", "needles"), [r[1:] for r in TABLE], ids=[r[0] for r in TABLE]
)
def test_bad_input_is_refused_before_any_forward(lm, call, exc, needles):
    before = lm.forwards
    with pytest.raises(exc) as info:
        call(lm)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in the message {msg!r}"
    assert lm.forwards == before, "the model ran a forward before the error"


def test_a_good_call_does_run_forwards(lm):
    """The counter counts: the same fixture with valid arguments makes forwards."""
    before = lm.forwards
    out = pt.sample(lm, "the cat", particles=2, max_tokens=2, seed=0)
    assert lm.forwards > before and len(out.texts) == 2


def test_regex_flags_work():
    """``flags`` is honoured, not silently dropped (the finished string is re.fullmatch-ed)."""
    assert pt.regex("ab", flags=re.IGNORECASE).complete(list(b"AB")) == 0.0
    assert pt.regex("ab", flags=0).complete(list(b"AB")) == -np.inf
    assert pt.regex("a b # a comment", flags=re.VERBOSE).complete(list(b"ab")) == 0.0
    assert pt.regex("a.b", flags=re.DOTALL).complete(list(b"a\nb")) == 0.0
    assert pt.regex("a.b").complete(list(b"a\nb")) == -np.inf
