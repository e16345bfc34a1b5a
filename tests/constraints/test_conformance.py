"""Conformance of potentia.json on the JSON-Schema-Test-Suite (2020-12) and MaskBench sample.

Each instance is serialised with ``json.dumps(..., ensure_ascii=False)`` and ``complete`` is
compared with the suite's ``valid``. ``complete`` only accepts what the engine consumed byte
by byte, so an accepted instance has every prefix viable; a valid instance whose prefix the
engine cuts is counted as ``unsound``. Schemas we refuse must be refused with a ValueError naming the keyword.
The thresholds are the issue's targets; docs/constraints.md lists the measured numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from potentia.constraints.json_schema import JSONSchema

DATA = Path("/work/shared/data")
JSTS = sorted((DATA / "json-schema-test-suite" / "draft2020-12").glob("*.json"))
MASKBENCH = sorted((DATA / "maskbench-sample").glob("*.json"))


def encode(value) -> list[int]:
    return list(json.dumps(value, ensure_ascii=False).encode())


def run(cases, formats: bool) -> dict:
    out = {"schemas": 0, "accepted": 0, "instances": 0, "agree": 0, "unsound": 0, "bad": []}
    for schema, tests in cases:
        out["schemas"] += 1
        try:
            c = JSONSchema(schema, formats=formats, mode="any")
        except ValueError as e:
            assert "`" in str(e), str(e)  # names the keyword / argument
            continue
        out["accepted"] += 1
        for t in tests:
            out["instances"] += 1
            data = encode(t["data"])
            ok = c.complete(data) == 0.0
            out["agree"] += ok == t["valid"]
            if ok != t["valid"]:
                out["bad"].append((t["description"], t["valid"]))
            if t["valid"] and not ok and c.prefix(data) != 0.0:
                out["unsound"] += 1
    return out


def jsts_cases():
    for f in JSTS:
        for case in json.loads(f.read_text()):
            yield case["schema"], case["tests"]


def maskbench_cases():
    for f in MASKBENCH:
        d = json.loads(f.read_text())
        yield d["schema"], d["tests"]


@pytest.mark.skipif(not JSTS, reason="JSON-Schema-Test-Suite not available")
@pytest.mark.parametrize("formats", [False, True], ids=["format-annotation", "format-assert"])
def test_json_schema_test_suite(formats):
    r = run(jsts_cases(), formats)
    # the known representation limits (1.0 for an integer/const, see docs) are engine cuts
    assert r["unsound"] <= 10, r["bad"]
    share = r["agree"] / r["instances"]
    # 2020-12 makes `format` an annotation: format.json expects invalid formats to pass, so
    # asserting formats (our default) loses those 19 instances; both stay above 97.5%.
    assert share >= (0.98 if not formats else 0.975), (share, r["bad"])
    assert r["accepted"] >= 0.9 * r["schemas"]


@pytest.mark.slow
@pytest.mark.skipif(not MASKBENCH, reason="MaskBench sample not available")
def test_maskbench_sample():
    r = run(maskbench_cases(), formats=True)
    assert r["unsound"] == 0
    assert r["accepted"] >= 0.95 * r["schemas"]
    assert r["agree"] == r["instances"], r["bad"]
