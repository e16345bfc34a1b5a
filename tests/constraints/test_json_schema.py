"""potentia.json: exact JSON Schema semantics, engine-enforced prefixes, late keywords."""

from __future__ import annotations

import functools
import json

import jsonschema
import numpy as np
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

import potentia as pt
from potentia.constraints.json_schema import LATE
from potentia.potentials import Vocabulary
from potentia.testing.laws import assert_potential_laws

#: Most tests here are about exact JSON semantics: every JSON text of the schema.
pt_json = functools.partial(pt.json, mode="any")

SETTINGS = settings(
    max_examples=20, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"type": "integer"}, "contains": {"const": 3}, "maxItems": 4},
    {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "boolean"}]},
    {"type": "object", "dependentRequired": {"a": ["b"]}, "not": {"required": ["c"]}},
    {
        "if": {"type": "string"},
        "then": {"minLength": 2},
        "else": {"type": "number", "multipleOf": 0.5},
    },
]


# hypothesis-jsonschema's object strategy is broken with the installed hypothesis
# (`'many' object has no attribute 'more'`), so objects are generated here.
PERSON = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=6), "age": st.integers(0, 150)},
    optional={"tags": st.lists(st.sampled_from("abc"), unique=True)},
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4) | st.floats(-4, 4),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "name", "age"]), inner, max_size=3)
    ),
    max_leaves=8,
)
STRATEGIES = (
    [PERSON]
    + [from_schema(s) for s in SCHEMAS[1:3]]
    + [
        st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=3).filter(
            lambda d: ("a" not in d or "b" in d) and "c" not in d
        ),
        from_schema(SCHEMAS[4]),
    ]
)


def enc(value, **kw) -> list[int]:
    return list(json.dumps(value, ensure_ascii=False, **kw).encode())


def walk_ok(c, data: list[int]) -> bool:
    """Every byte allowed by the single-token check and the state's prefix; then EOS."""
    state = c.init_state(1)
    for x in data:
        if state.logw_tokens(np.array([0]), np.array([x]))[0] != 0.0:
            return False
        state = state.advance(np.array([x]))
    return state.complete()[0] == 0.0


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_valid_documents_pass_every_prefix(schema):
    c = pt_json(schema)

    @SETTINGS
    @given(STRATEGIES[SCHEMAS.index(schema)])
    def check(value):
        assert jsonschema.Draft202012Validator(schema).is_valid(value)
        for kw in ({}, {"indent": 1}, {"separators": (",", ":")}):
            assert walk_ok(c, enc(value, **kw)), value

    check()


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_complete_agrees_with_jsonschema_on_random_values(schema):
    c = pt_json(schema)
    v = jsonschema.Draft202012Validator(schema)

    @SETTINGS
    @given(JSON_VALUES)
    def check(value):
        assert (c.complete(enc(value)) == 0.0) == v.is_valid(value), value

    check()


def test_late_keywords_are_checked_at_completion_only():
    c = pt_json({"type": "array", "items": {"type": "integer"}, "uniqueItems": True})
    assert c.late_keywords == ["uniqueItems"]
    assert c.prefix(list(b"[1, 1")) == 0.0  # the engine cannot know yet
    assert c.complete(list(b"[1, 1]")) == -np.inf
    assert c.complete(list(b"[1, 2]")) == 0.0
    assert c.prefix(list(b'["x"')) == -np.inf  # `items` is enforced early
    for kw in ("not", "if", "contains", "dependentRequired", "uniqueItems"):
        assert kw in LATE


def test_property_order_and_whitespace():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "required": ["a", "b"],
    }
    c = pt_json(schema)
    assert c.complete(list(b'{"b": "x", "a": 1}')) == 0.0
    assert c.complete(list(b' {\n\t"a" :1 ,"b":"x"}\r\n')) == 0.0
    assert c.complete(list(b'{"a": 1}')) == -np.inf  # required, checked at the end
    assert c.complete(list(b'{"a": 1, "a": 2, "b": "x"}')) == -np.inf  # duplicate key
    assert c.prefix(list(b'{"a": "')) == -np.inf  # property schemas are enforced early
    ordered = pt_json(schema, property_order="schema")
    assert ordered.complete(list(b'{"a": 1, "b": "x"}')) == 0.0
    assert ordered.prefix(list(b'{"b"')) == -np.inf
    compact = pt_json(schema, whitespace="none")
    assert compact.complete(list(b'{"a":1,"b":"x"}')) == 0.0
    assert compact.prefix(list(b'{"a": ')) == -np.inf


def test_pydantic_model_and_custom_validator():
    class Person(pydantic.BaseModel):
        name: str
        age: int

        @pydantic.field_validator("name")
        @classmethod
        def capitalised(cls, v: str) -> str:
            if not v[:1].isupper():
                raise ValueError("name must be capitalised")
            return v

    c = pt_json(Person)
    assert c.complete(list(b'{"name": "Ann", "age": 3}')) == 0.0
    assert c.complete(list(b'{"age": 3, "name": "Ann"}')) == 0.0
    assert c.complete(list(b'{"name": "ann", "age": 3}')) == -np.inf
    assert c.prefix(list(b'{"age": "')) == -np.inf


def test_laws_on_bytes_and_a_token_vocab():
    c = pt_json({"type": "array", "items": {"enum": ["é", "ab"]}, "uniqueItems": True})
    assert_potential_laws(
        c, [list(b"["), list(b'["\xc3'), list(b'["x'), []], valid=[enc(["é", "ab"])]
    )
    vocab = Vocabulary([b"[", b"]", b'"', b"\xc3", b"\xa9", b'"\xc3\xa9"', b"ab", b", ", b""])
    lc = c.lift(vocab)
    ctxs = [[], [0], [0, 2, 3], [0, 5], [0, 5, 7, 5], [1], [0, 8, 2, 6]]
    assert_potential_laws(lc, ctxs, valid=[[0, 5, 7, 2, 6, 2, 1], [0, 1]])


@pytest.mark.parametrize(
    "schema,needle",
    [
        ({"type": "foo"}, r"keyword `type` at JSON pointer '/type'"),
        ({"minimum": "x"}, r"keyword `minimum` at JSON pointer '/minimum'"),
        (
            {"items": {"$ref": "http://example.com/s.json"}},
            r"`\$ref` at JSON pointer '/items/\$ref'",
        ),
        ({"$schema": "http://example.com/my-meta"}, r"`\$schema`"),
        ("{not json", "not JSON"),
    ],
)
def test_bad_schemas_raise(schema, needle):
    with pytest.raises(ValueError, match=needle):
        pt_json(schema)


def test_bad_argument_types():
    with pytest.raises(TypeError, match="`schema`"):
        pt_json(3)
    with pytest.raises(ValueError, match="`whitespace`"):
        pt_json({}, whitespace="some")
    with pytest.raises(ValueError, match="`property_order`"):
        pt_json({}, property_order="random")
    with pytest.raises(ValueError, match="empty"):
        pt_json(False)


# ----- issue 10: engine errors, order independence, escapes ---------------------------
GREEK = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
    "rho sigma tau upsilon phi chi psi omega"
).split()
PANELS = {
    "type": "object",
    "properties": {
        f"panel{k}": {
            "type": "object",
            "properties": {f"{w}Found{k}": {"type": "string"} for w in GREEK},
        }
        for k in range(40)
    },
}
PANEL_DOC = json.dumps(
    {f"panel{k}": {f"{w}Found{k}": f"{w.title()} Found" for w in GREEK} for k in range(40)}
).encode()


@pytest.fixture(scope="module")
def panels():
    assert jsonschema.Draft202012Validator(PANELS).is_valid(json.loads(PANEL_DOC))
    return pt_json(PANELS)


def test_engine_error_is_not_a_rejection_and_does_not_poison(panels):
    # llguidance used to fail here ("lexer error: too many expressions constructed") after
    # the emptiness check's mask, and every later query of the object failed too.
    assert panels.complete(list(PANEL_DOC)) == 0.0
    assert panels.prefix(list(b"{")) == 0.0
    assert panels.prefix(list(PANEL_DOC[:-1])) == 0.0
    assert panels.complete(list(PANEL_DOC[:-1])) == -np.inf
    assert panels.prefix(list(b'{"panel0": 1')) == -np.inf


def _queries():
    bad = PANEL_DOC[:40] + b"1"
    return [
        ("prefix", PANEL_DOC, 0.0),
        ("complete", PANEL_DOC, 0.0),
        ("prefix", PANEL_DOC[:-1], 0.0),
        ("complete", PANEL_DOC[:-1], -np.inf),
        ("prefix", b"{", 0.0),
        ("prefix", bad, -np.inf),
        ("next", PANEL_DOC[:500], PANEL_DOC[500]),
        ("walk", PANEL_DOC[:300], 0.0),
    ]


def _answer(c, kind, data):
    if kind in ("prefix", "complete"):
        return getattr(c, kind)(list(data))
    if kind == "next":  # the full mask at a state, read at the document's next byte
        st_ = c.init_state(1).advance(np.array([data[0]]))
        for x in data[1:]:
            st_ = st_.advance(np.array([x]))
        return st_.logw_next()[0]
    st_ = c.init_state(1)
    for x in data:
        st_ = st_.advance(np.array([x]))
    return st_.prefix()[0]


@settings(max_examples=6, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.integers(0, len(_queries()) - 1), min_size=1, max_size=6))
def test_answers_do_not_depend_on_query_order(panels, order):
    """Random interleavings on one object give the answers a fresh object gives."""
    queries = _queries()
    for i in order:
        kind, data, want = queries[i]
        got = _answer(panels, kind, data)
        if kind == "next":  # the document's next byte allowed, a control byte never
            assert got[want] == 0.0 and got[1] == -np.inf
        else:
            assert got == want, (kind, len(data))


def test_answers_equal_a_fresh_objects():
    fresh = pt_json(PANELS)
    for kind, data, want in _queries()[:2]:
        assert _answer(fresh, kind, data) == want


class _Broken:
    """A matcher that always reports an engine error (a spent resource limit)."""

    def deep_copy(self):
        return self

    def try_consume_tokens(self, toks):
        return 0

    def is_error(self):
        return True

    def get_error(self):
        return "lexer error: too many expressions constructed\n<state>"


def test_limit_error_is_raised_and_complete_stays_exact(monkeypatch):
    from potentia.constraints.llg import EngineLimitError

    c = pt_json({"type": "array", "items": {"type": "integer"}})
    monkeypatch.setattr(c, "_root", _Broken())
    monkeypatch.setattr(c, "_new_root", lambda factor: _Broken())
    with pytest.raises(EngineLimitError, match=r"too many expressions.*step_lexer_fuel.*limits="):
        c.prefix(list(b"[1"))
    assert c.complete(list(b"[1, 2]")) == 0.0  # answered by the exact jsonschema check
    assert c.complete(list(b'[1, "x"]')) == -np.inf
    with pytest.raises(ValueError, match="`limits` has unknown keys"):
        pt_json({}, limits={"fuel": 1})


@pytest.mark.parametrize(
    "schema",
    [True, {"type": "string"}, {"type": "string", "maxLength": 3}, {"type": "array"}],
    ids=["true", "string", "maxLength", "array"],
)
def test_every_json_escape_is_accepted(schema):
    c = pt_json(schema)
    docs = [b'"\\u0041"', b'"\\u00e9"', b'"\\ud83d\\ude00"', b'"\\uD83D\\uDE00"', b'"\\u001f"']
    docs += [b'"\\n\\b\\f\\r\\t\\"\\\\"', b'"\\u0022\\u005c"']
    for d in docs:
        if schema == {"type": "array"}:
            d = b"[" + d + b"]"
        want = 0.0 if jsonschema.Draft202012Validator(schema).is_valid(json.loads(d)) else -np.inf
        assert c.complete(list(d)) == want, d
        assert walk_ok(c, list(d)) == (want == 0.0), d
    assert c.complete(list(b'"\\ud83d"')) == -np.inf  # a lone surrogate is no character


def test_ascii_escaped_documents_pass():
    s = {"type": "object", "properties": {"ru": {"type": "string"}, "é": {"enum": ["Привет", 1]}}}
    c = pt_json(s)
    for v in ({"ru": "Привет"}, {"é": "Привет"}, {"é": 1.0}):
        assert walk_ok(c, list(json.dumps(v).encode())), v
    assert c.complete(list(json.dumps({"é": "Hello"}).encode())) == -np.inf  # checked late
    assert walk_ok(pt_json({"type": "integer"}), list(b"1.0"))
    assert walk_ok(
        pt_json({"const": {"a": 1, "b": [2.5, "x"]}}), list(b'{"b": [2.5, "x"], "a": 1}')
    )


# ----- needless escapes are read canonically (potentia.constraints.json_spelling) ----------
ESCAPED = [
    (True, b'"a\\/b"'),
    ({"type": "string"}, b'"http:\\/\\/x"'),
    ({"type": "string", "pattern": "^[A-Z]+$"}, b'"\\u0041B"'),
    ({"type": "string", "pattern": "^[A-Z]+$"}, b'"\\u0061"'),
    ({"type": "string", "pattern": "^a/b$"}, b'"a\\/b"'),
    ({"enum": ["abc", "x"]}, b'"\\u0061bc"'),
    ({"const": "abc"}, b'"ab\\u0063"'),
    ({"const": "abc"}, b'"ab\\n"'),
    ({"const": "a\nb"}, b'"a\\u000ab"'),
    ({"const": 'a"b'}, b'"a\\u0022b"'),
    ({"type": "string", "pattern": "^\U0001f600$"}, b'"\\ud83d\\ude00"'),
    ({"type": "string", "pattern": "^\U0001f600$"}, b'"\\ud83d\\ude01"'),
    (
        {
            "properties": {"ab": {"type": "integer"}},
            "required": ["ab"],
            "additionalProperties": False,
        },
        b'{"\\u0061b": 1}',
    ),
    (
        {"properties": {"ab": {"type": "integer"}}, "additionalProperties": False},
        b'{"\\u0061c": 1}',
    ),
    ({"propertyNames": {"pattern": "^[a-z]+$"}}, b'{"\\u0078": 1}'),
]


@pytest.mark.parametrize("schema,doc", ESCAPED, ids=range(len(ESCAPED)))
def test_needless_escapes_are_read_canonically(schema, doc):
    """Every spelling of a valid string is in the language; invalid ones stay out."""
    c = pt_json(schema)
    want = jsonschema.Draft202012Validator(schema).is_valid(json.loads(doc))
    assert walk_ok(c, list(doc)) == want, doc
    assert (c.complete(list(doc)) == 0.0) == want, doc
    if want:
        assert all(c.prefix(list(doc[:k])) == 0.0 for k in range(len(doc) + 1))


def test_canonical_spelling_matches_json_dumps():
    from potentia.constraints.json_spelling import START, canonical, feed

    rng = np.random.default_rng(10)
    for _ in range(500):
        codes = [
            int(rng.choice([rng.integers(0, 0x80), rng.integers(0x80, 0xD800)])) for _ in range(4)
        ]
        codes.append(int(rng.integers(0x10000, 0x110000)))
        s = "".join(chr(x) for x in rng.permutation(codes))
        v = {s: [s[::-1], "/"]}
        raw, want = json.dumps(v).encode(), json.dumps(v, ensure_ascii=False).encode()
        raw = raw.replace(b"/", b"\\/")
        assert canonical(raw) == want
        state, out, i = START, b"", 0
        while i < len(raw):  # streaming in random pieces gives the same image
            k = int(rng.integers(1, 8))
            state, piece = feed(state, raw[i : i + k])
            out, i = out + piece, i + k
        assert (state, out) == (START, want)


def test_escapes_on_a_token_vocab_agree_with_bytes():
    """Token masks, single-token checks and states equal the byte-level answers."""
    toks = [b'"', b"\\", b"\\u", b"00", b"41", b"61", b"\\/", b"a", b"A", b"\\u0041", b"u"]
    toks += [b"0", b"4", b"1", b"/", b'"\\', b"n", b"{", b"}", b":", b" ", b"\\u00", b'A"', b""]
    n_named = len(toks)
    # every byte spellable, as in real vocabularies: whether an unfinished escape can still
    # give an accepted character is checked on the canonical bytes of that character
    toks += [bytes([b]) for b in range(256) if bytes([b]) not in toks]
    vocab = Vocabulary(toks)
    rng = np.random.default_rng(0)
    for schema in ({"const": "A/"}, {"type": "string", "pattern": "^[A/]*$"}, {"type": "string"}):
        c = pt_json(schema)
        lc = c.lift(vocab)
        ctxs = [[], [0], [0, 1], [0, 2], [0, 21], [0, 2, 3], [0, 9], [0, 15], [0, 6, 0]]
        ctxs += [
            [0, *rng.integers(0, n_named, size=int(rng.integers(1, 5))).tolist()] for _ in range(25)
        ]
        for x in ctxs:
            data = b"".join(toks[t] for t in x)
            lw = lc.logw_next(x)
            for t in range(len(toks)):
                assert lw[t] == c.prefix(list(data + toks[t])), (schema, x, t)
            assert lw[-1] == c.complete(list(data)), (schema, x)
        assert_potential_laws(
            lc,
            ctxs,
            valid=[[0, 9, 14, 0], [0, 2, 3, 4, 6, 0]]
            if schema != {"const": "A/"}
            else [[0, 9, 6, 0]],
        )


# ----- plainly empty languages and dangling references are refused at build ---------------
@pytest.mark.parametrize(
    "schema,where,what",
    [
        ({"type": "integer", "minimum": 5, "maximum": 1}, "'/'", "no integer between"),
        ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "'/'", "no integer"),
        ({"type": "number", "minimum": 2, "exclusiveMaximum": 2}, "'/'", "no number"),
        (
            {"type": "string", "minLength": 5, "maxLength": 2},
            "'/'",
            "`minLength` 5 > `maxLength` 2",
        ),
        ({"type": "array", "minItems": 3, "maxItems": 1}, "'/'", "`minItems` 3"),
        ({"enum": ["a", "b"], "type": "integer"}, "'/'", "no `enum` value"),
        ({"const": 3, "minimum": 4}, "'/'", "no `const` value"),
        ({"enum": []}, "'/'", "empty `enum`"),
        (
            {
                "properties": {"a": {"type": "string", "maxLength": -0, "minLength": 1}},
                "required": ["a"],
            },
            "'/properties/a'",
            "`minLength` 1",
        ),
        (
            {"anyOf": [{"type": "integer", "minimum": 3, "maximum": 2}, False]},
            "'/anyOf'",
            "no satisfiable branch",
        ),
        (
            {"type": "array", "minItems": 1, "items": {"enum": [1], "type": "string"}},
            "'/items'",
            "`enum`",
        ),
        ({"$ref": "#/$defs/missing"}, "'/$ref'", "does not exist in the schema"),
        (
            {"$defs": {"a": {"$ref": "#/$defs/b"}}, "properties": {"x": {"$ref": "#/$defs/a"}}},
            "'/$defs/a/$ref'",
            "'#/$defs/b'",
        ),
    ],
)
def test_plainly_empty_schemas_are_refused_at_build(schema, where, what):
    with pytest.raises(ValueError, match="JSON pointer") as e:
        pt_json(schema)
    assert where in str(e.value) and what in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"a": {"type": "integer", "minimum": 3, "maximum": 2}}},  # optional: fine
        {"minimum": 5, "maximum": 1},  # any non-number is valid
        {"type": "integer", "minimum": 1, "maximum": 1},
        {"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
        {"$defs": {"unused": {"$ref": "#/$defs/nowhere"}}, "type": "integer"},  # never evaluated
        {"anyOf": [False, {"type": "integer"}]},
    ],
)
def test_satisfiable_schemas_still_build(schema):
    pt_json(schema)


# ----- structured mode (the default): a declared restriction for structured output -------
def test_structured_mode_defaults():
    c = pt.json(
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    )
    assert (c.mode, c.whitespace, c.property_order, c.extra, c.int_digits) == (
        "structured",
        "dumps",
        "schema",
        "forbid",
        15,
    )
    assert walk_ok(c, list(b'{"a": 1, "b": "x"}'))
    assert c.complete(list(b'{"a":1,"b":"x"}')) == -np.inf  # one spelling: json.dumps's
    assert c.complete(list(b'{"b": "x", "a": 1}')) == -np.inf  # the schema's key order
    assert c.prefix(list(b'{"a": 1, "c')) == -np.inf  # no key the schema does not list
    assert c.prefix(list(b'{"a": 1234567890123456')) == -np.inf  # 16 digits
    assert walk_ok(c, list(b'{"a": -999999999999999}'))
    anyc = pt.json(c.schema, mode="any")
    for doc in (
        b'{"a":1,"b":"x"}',
        b'{"b": "x", "a": 1}',
        b'{"a": 1, "c": 2}',
        b'{"a": 1234567890123456}',
    ):
        assert anyc.complete(list(doc)) == 0.0, doc
    assert pt.json({"type": "integer"}, int_digits=None).complete(list(b"1" * 30)) == 0.0


def test_structured_mode_keeps_pydantic_models_and_compositions_satisfiable():
    from pydantic import BaseModel

    class Sub(BaseModel):
        x: int

    class Top(BaseModel):
        name: str
        sub: Sub | None = None
        subs: list[Sub] = []

    c = pt.json(Top)
    v = Top(name="é", sub=Sub(x=1), subs=[Sub(x=2)])
    assert walk_ok(c, list(json.dumps(v.model_dump()).encode()))
    assert c.prefix(list(b'{"name": "a", "sub": {"x": 1, "y')) == -np.inf  # nested: closed too
    split = {"allOf": [{"properties": {"a": {"type": "integer"}}}, {"properties": {"b": {}}}]}
    assert walk_ok(pt.json(split), list(b'{"a": 1, "b": 2}'))  # allOf branches stay open
    from potentia.constraints.json_schema import restrict_schema

    assert "additionalProperties" not in restrict_schema(split)["allOf"][0]
    mixed = {
        "$defs": {"D": {"properties": {"a": {}}}},
        "allOf": [{"$ref": "#/$defs/D"}],
        "properties": {"b": {}},
    }
    assert "additionalProperties" not in restrict_schema(mixed)["$defs"]["D"]  # used in allOf


def test_sample_lets_a_structured_constraint_end_the_string(monkeypatch):
    import potentia.api as api

    seen = []
    real = api.AutoStop
    monkeypatch.setattr(api, "AutoStop", lambda lm, c: seen.append(c) or real(lm, c))
    from potentia.models import ToyLM, random_ngram

    vocab = pt.Vocabulary([b"t", b"r", b"u", b"e", b"f", b"a", b"l", b"s", b"true", b"false"])
    toy = ToyLM(random_ngram(np.random.default_rng(0), vocab, order=1))
    out = pt.sample(toy, (), pt.json({"type": "boolean"}), particles=8, max_tokens=6, seed=0)
    assert len(seen) == 1 and set(out.posterior) <= {"true", "false"} and out.posterior
    pt.sample(toy, (), pt.json({"type": "boolean"}, mode="any"), particles=2, max_tokens=6, seed=0)
    assert len(seen) == 2  # `any` mode may end too (no trailing whitespace is ever maximal)


def test_masks_agree_with_prefixes_for_tokens_ending_in_an_escape():
    """A token whose bytes end in an unfinished escape (``x\\``) is allowed by the mask iff
    the context plus it is a viable prefix: the head check before the character search
    (``JSONSchema._read``) may only refuse what the search would refuse."""
    vocab = Vocabulary(
        [b"{", b"}", b'"', b":", b"1", b"a", b"b", b"x", b"ab\\", b"x\\", b"a\\", b'"a\\']
        + [b"\\", b"u", b"0", b"6", b"2", b'{"', b'":', b"b\\"]
    )
    schema = {
        "type": "object",
        "properties": {"ab": {"const": 1}, "xb": {"type": "string"}},
        "required": ["ab"],
        "additionalProperties": False,
    }
    c = pt.json(schema, mode="any").lift(vocab)
    V = len(vocab)
    frontier, checked = [[]], 0
    for _ in range(4):
        nxt = []
        for ctx in frontier:
            lw = c.logw_next(ctx)
            for t in range(V):
                viable = c.prefix(ctx + [t]) == 0.0
                assert (lw[t] == 0.0) == viable, (vocab.decode_bytes(ctx + [t]), lw[t])
                checked += 1
                if viable:
                    nxt.append(ctx + [t])
        frontier = nxt[:40]
    assert checked > 400
