"""The seeds' examples (issue 13 item 4) as smoke tests on the embedded Gemma, tiny settings.

Each example's ``main(lm=...)`` reuses the session's model. Beyond "it runs", every test
checks the finished samples against an independent reading of the constraint (plain Python
on the text), and that the example's own prefix checks print the verdicts it documents.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from potentia.constraints.verse import rhyme_key, syllable_counts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.real_model


def _load(name):
    spec = importlib.util.spec_from_file_location(f"seed_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def finished(out):
    return [t for t, s in zip(out.texts, out.status) if s == "finished"]


def test_terminology_translation(gemma, capsys):
    ex = _load("terminology_translation")
    out = ex.main(lm=gemma, particles=2, max_tokens=12)
    assert finished(out), out.message
    for t in finished(out):
        assert all(term in t for term in ex.TERMS) and len(t) <= ex.MAX_CHARS, t
    printed = capsys.readouterr().out
    assert "prefix -inf  complete -inf  ' Le chat dort sur le petit lit'" in printed


def test_safe_code(gemma, capsys):
    ex = _load("safe_code")
    out = ex.main(lm=gemma, particles=2, max_tokens=8)
    assert out.texts
    for t, w in zip(out.texts, out.log_weights):
        if np.isfinite(w):
            assert "tx.origin" not in t and not ex.UNCHECKED.search(t), t
    assert ex.banned('        to.call{value: amount}("");\n') == ["to.call{"]
    assert ex.banned('        (bool ok, ) = to.call{value: amount}("");\n') == []
    assert ex.banned("require(tx.origin == owner);") == ["tx.origin"]
    assert "prefix -inf  '        require(tx.origin == owner);\\n'" in capsys.readouterr().out


def test_kg_chain(gemma):
    ex = _load("kg_chain")
    out = ex.main(lm=gemma, particles=2, max_tokens=20, max_hops=2)
    edges = set(ex.KG)
    assert finished(out), out.message
    for t in finished(out):
        triples = [tuple(m.split(", ")) for m in re.findall(r"\n\(([^()\n]*)\)", t)]
        assert "".join(f"\n({', '.join(x)})" for x in triples) == t and 1 <= len(triples) <= 2
        assert triples[0][0] == ex.TOPIC and all(x in edges for x in triples), t
        assert all(a[2] == b[0] for a, b in zip(triples, triples[1:])), t


def test_extractive_qa(gemma):
    ex = _load("extractive_qa")
    out = ex.main(lm=gemma, particles=2, max_tokens=8)
    assert finished(out), out.message
    for t in finished(out):
        assert t and t in " " + ex.PASSAGE, t


def test_poetry(gemma):
    ex = _load("poetry")
    out = ex.main(lm=gemma, particles=4, max_tokens=16)  # seed 0: 3 of 4 finish here
    assert finished(out), out.message
    for t in finished(out):
        lines = t.removesuffix("\n").split("\n")
        assert syllable_counts("\n".join(lines)) == ex.PER_LINE, t
        assert "e" not in t.lower(), t
        assert len({rhyme_key(line) for line in lines}) == 1, t
