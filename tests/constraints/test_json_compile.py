"""The compile-time shortcut for the 2020-12 meta-schema never says "valid" wrongly.

``_meta_ok`` lets ``potentia.json`` skip ``check_schema`` (the largest part of a compile);
it may only answer ``True`` for schemas ``jsonschema`` accepts. Checked on every MaskBench
and JSON-Schema-Test-Suite (2020-12) schema and on seeded mutations of them (a keyword's
value replaced by a value of another shape), and bad schemas keep jsonschema's message.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from potentia.constraints.json_schema import _META_DRAFTS, JSONSchema, _meta_ok, _validator_class

DATA = Path("/work/shared/data")
VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    1.0,
    "x",
    "^(",
    "#/a#b",
    "integer",
    "strin",
    [],
    ["a", "a"],
    ["string"],
    {},
    {"type": 1},
    [{}],
    "http://x y",
    3,
]
KEYS = [
    "minItems",
    "type",
    "pattern",
    "$ref",
    "required",
    "enum",
    "items",
    "anyOf",
    "$id",
    "$anchor",
    "multipleOf",
    "dependencies",
    "format",
    "properties",
    "patternProperties",
]


def _schemas() -> list:
    out = [
        json.loads(f.read_text())["schema"]
        for f in sorted((DATA / "maskbench-sample").glob("*.json"))
    ]
    for f in sorted((DATA / "json-schema-test-suite" / "draft2020-12").glob("*.json")):
        out += [c["schema"] for c in json.loads(f.read_text())]
    return out


def _nodes(n, out: list) -> list:
    if isinstance(n, dict):
        out.append(n)
        for v in n.values():
            _nodes(v, out)
    elif isinstance(n, list):
        for v in n:
            _nodes(v, out)
    return out


def _mutants(schemas: list, rng: random.Random) -> list:
    out = []
    for s in schemas:
        m = copy.deepcopy(s)
        nodes = _nodes(m, [])
        if not nodes:
            continue
        n = rng.choice(nodes)
        if n and rng.random() < 0.7:
            n[rng.choice(list(n))] = rng.choice(VALUES)
        else:
            n[rng.choice(KEYS)] = rng.choice(VALUES)
        out.append(m)
    return out


def _cls(s) -> type:
    try:
        return _validator_class(s)
    except ValueError:
        return Draft202012Validator


def _valid(s, cls=Draft202012Validator) -> bool:
    try:
        cls.check_schema(s)
    except jsonschema.SchemaError:
        return False
    return True


@pytest.mark.skipif(not (DATA / "maskbench-sample").exists(), reason="shared data not present")
def test_meta_shortcut_is_sufficient():
    schemas = _schemas()
    cases = schemas + _mutants(schemas, random.Random(0))
    wrong = [s for s in cases if _meta_ok(s) and not _valid(s)]
    assert not wrong, json.dumps(wrong[0])[:500]
    # each schema under its own dialect (draft-04/06/07 in MaskBench), and under the others
    for s in cases:
        for cls, d in _META_DRAFTS.items():
            if (cls is _cls(s) or d == 4) and _meta_ok(s, d):
                assert _valid(s, cls), (d, json.dumps(s)[:500])
    # the shortcut is worth having: it decides most real schemas itself
    own = [(s, _cls(s)) for s in schemas if _cls(s) in _META_DRAFTS]
    sure = sum(_meta_ok(s, _META_DRAFTS[c]) for s, c in own)
    assert sure >= 0.8 * sum(_valid(s, c) for s, c in own)


@pytest.mark.parametrize(
    "bad",
    [
        {"minItems": -1},
        {"minItems": True},
        {"type": "strin"},
        {"type": []},
        {"pattern": "^("},
        {"properties": {"a": {"required": "a"}}},
        {"anyOf": []},
        {"$id": "#/a#b"},
        {"multipleOf": 0},
    ],
)
def test_bad_schemas_keep_jsonschemas_message(bad):
    assert not _meta_ok(bad)
    with pytest.raises(jsonschema.SchemaError) as e:
        Draft202012Validator.check_schema(bad)
    with pytest.raises(ValueError, match="not a valid JSON Schema") as ours:
        JSONSchema(bad)
    assert e.value.message in str(ours.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"properties": {"a": True}},
        {"exclusiveMinimum": True},
        {"minimum": 0, "exclusiveMinimum": 1},
        {"required": []},
        {"enum": []},
        {"additionalItems": 1},
        {"items": [1]},
    ],
)
def test_bad_draft4_schemas_keep_jsonschemas_message(bad):
    bad = {"$schema": "http://json-schema.org/draft-04/schema#", **bad}
    assert not _meta_ok(bad, 4)
    with pytest.raises(jsonschema.SchemaError) as e:
        jsonschema.Draft4Validator.check_schema(bad)
    with pytest.raises(ValueError, match="not a valid JSON Schema") as ours:
        JSONSchema(bad)
    assert e.value.message in str(ours.value)


def test_shortcut_accepts_what_jsonschema_accepts():
    ok = {"minItems": 1.0, "type": ["string", "null"], "$vocabulary": {}}
    assert JSONSchema(ok, mode="any").complete(list(b'"a"')) == 0.0
