"""Over-constraining errors of ``json_schema(..., mode="any")`` on MaskBench schemas: none.

The dottxt mask-error walk (benchmarks/jsonschemabench.py ``mask`` runs it on the whole
sample for every engine): every byte prefix of a valid test instance, in three
serialisations plus one with every object's keys in reverse order (``mode="any"`` admits
any key order), must be admitted by the byte-level state walk, and the finished text
accepted. A refused prefix is an over-constraining error. The planted-bug check makes
sure the walk does find errors where the language is narrower (``mode="structured"``:
``json.dumps`` spelling only, so ``indent=2`` texts are refused).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from potentia.constraints.json_schema import JSONSchema

DATA = Path("/work/shared/data/maskbench-sample")
# a handful with arrays, nested objects, enums, non-ASCII-prone strings, several keys
NAMES = [
    "Github_easy---o10030",
    "Glaiveai2K---calculate_gpa_2ae944c7",
    "Glaiveai2K---generate_invoice_0df16806",
    "BFCL_parallel_101",
    "Kubernetes---kb_1015_Normalized",
    "Snowplow---sp_138_Normalized",
]


def _reversed_keys(v: object) -> object:
    if isinstance(v, dict):
        return {k: _reversed_keys(v[k]) for k in reversed(list(v))}
    if isinstance(v, list):
        return [_reversed_keys(x) for x in v]
    return v


SERIALISATIONS = {
    "compact": lambda v: json.dumps(v, separators=(",", ":")),
    "indent2": lambda v: json.dumps(v, indent=2),
    "unicode": lambda v: json.dumps(v, ensure_ascii=False),
    "reversed_keys": lambda v: json.dumps(_reversed_keys(v), indent=1, ensure_ascii=False),
}


def first_refused(c: JSONSchema, data: bytes) -> int | None:
    """The first refused byte of ``data`` (``len(data)``: the finished text refused)."""
    st = c.init_state(1)
    for i, b in enumerate(data):
        st = st.advance(np.array([b]))
        if st.prefix()[0] != 0.0:
            return i
    return None if st.complete()[0] == 0.0 else len(data)


def cases() -> list[tuple[str, object, list]]:
    out = []
    for name in NAMES:
        path = DATA / f"{name}.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        valid = [t["data"] for t in doc.get("tests", []) if t.get("valid")]
        if valid:
            out.append((name, doc["schema"], valid))
    return out


@pytest.mark.skipif(not DATA.exists(), reason="MaskBench sample not present")
def test_mode_any_has_no_over_constraining_errors():
    cs = cases()
    assert len(cs) >= 4, "too few MaskBench schemas found for the walk"
    errors, walks = [], 0
    for name, schema, valid in cs:
        c = JSONSchema(schema, mode="any")
        for v in valid:
            for sname, ser in SERIALISATIONS.items():
                data = ser(v).encode("utf-8")
                walks += 1
                at = first_refused(c, data)
                if at is not None:
                    errors.append((name, sname, data[: at + 1][-50:]))
    assert walks >= 16
    assert errors == []


@pytest.mark.skipif(not DATA.exists(), reason="MaskBench sample not present")
def test_walk_finds_errors_where_the_language_is_narrower():
    # planted narrowing: the structured mode spells json.dumps only, so indent=2 is refused
    name, schema, valid = cases()[0]
    c = JSONSchema(schema, mode="structured")
    data = json.dumps(valid[0], indent=2).encode("utf-8")
    assert first_refused(c, data) is not None
