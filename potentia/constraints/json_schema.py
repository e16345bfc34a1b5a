r"""``potentia.json``: JSON documents valid for a JSON Schema (draft 2020-12) or a Pydantic model.

The potential is exact: ``complete`` accepts a finished byte string iff it is a JSON text
(RFC 8259, any JSON whitespace, no duplicate object keys, no NaN/Infinity) whose value
is valid for the *full* schema under ``jsonschema.Draft202012Validator`` with its format
checker (and, for a Pydantic model, ``model_validate_json`` succeeds).

``prefix`` runs llguidance on a *relaxed* schema that keeps only what the engine enforces
soundly (see :data:`EARLY` and :data:`LATE`): its language is a superset of the valid
documents, so no prefix of a valid document is ever cut, and keywords that a masking
engine cannot enforce (``uniqueItems``, ``not``, ``if/then/else``, ``contains``, ...) are
enforced at completion, where SMC's weights handle the dead ends. Object properties may
appear in any order (JSON semantics): the relaxed schema lists named properties as
anchored ``patternProperties`` and checks ``required`` at completion; pass
``property_order="schema"`` to force the schema's order instead (then ``required`` is
enforced early too, and documents with other orders are outside the language).

Spellings: the engine reads every string in its canonical spelling
(:mod:`potentia.constraints.json_spelling`): ``\/`` and every ``\uXXXX`` escape, surrogate
pairs included, are rewritten to the character itself before llguidance sees them, so
``pattern``, ``enum``/``const`` strings and property names match whatever the spelling
(lone surrogates are refused). Where llguidance matches a value as written in the schema
(``type: integer`` against ``1.0``, numeric or object ``const``/``enum`` values), the
relaxed schema keeps only the value's shape and ``complete`` decides. Remaining limit (see
docs/constraints.md): exponent spellings and ``-0`` under numeric bounds.

Engine errors are never read as rejections (see :mod:`potentia.constraints.llg`).

Refused (``ValueError`` naming the keyword and its JSON pointer): schemas that fail the
2020-12 meta-schema, and ``$ref``/``$dynamicRef`` to documents outside the schema (remote
references cannot be checked offline).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal
from urllib.parse import urldefrag, urljoin

import jsonschema
import jsonschema_specifications
import llguidance
import numpy as np
import referencing
import referencing.exceptions
import referencing.jsonschema

from potentia.constraints.json_spelling import START, Lex, Spelling
from potentia.constraints.llg import (
    NO_FORCING,
    LLGConstraint,
    _check_limits,
    bytes_vocab,
    llg_tokenizer,
)
from potentia.potentials.base import Vocabulary

__all__ = ["json_schema", "JSONSchema", "relax_schema", "restrict_schema", "MODES", "EARLY", "LATE"]

#: Keywords the engine enforces while the document is written (prefix level).
EARLY = frozenset(
    "type enum const minimum maximum exclusiveMinimum exclusiveMaximum minLength maxLength "
    "pattern items prefixItems minItems maxItems properties patternProperties "
    "additionalProperties minProperties maxProperties anyOf oneOf allOf $ref $defs "
    "definitions $id $anchor".split()
)
#: Keywords checked only on the finished value (``complete``), with the reason.
LATE = {
    "required": "any property order (early with property_order='schema')",
    "multipleOf": "a number may be spelt 2.0 or 2e0",
    "oneOf": "exclusivity (early as anyOf)",
    "uniqueItems": "needs the whole array",
    "contains": "needs the whole array",
    "minContains": "needs the whole array",
    "maxContains": "needs the whole array",
    "not": "complement of a language",
    "if": "conditional",
    "then": "conditional",
    "else": "conditional",
    "dependentRequired": "needs the whole object",
    "dependentSchemas": "needs the whole object",
    "dependencies": "needs the whole object",
    "propertyNames": "engine support incomplete",
    "unevaluatedProperties": "needs evaluation results",
    "unevaluatedItems": "needs evaluation results",
    "$dynamicRef": "dynamic scope",
    "$dynamicAnchor": "dynamic scope",
    "$recursiveRef": "dynamic scope",
    "$recursiveAnchor": "dynamic scope",
    "format": "engine and jsonschema format checkers differ",
    "contentMediaType": "annotation in 2020-12",
    "contentEncoding": "annotation in 2020-12",
    "contentSchema": "annotation in 2020-12",
}
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
_RX_META = set(r"\.^$|?*+()[]{}/")


# ----- a fast sufficient test of the meta-schema --------------------------------
# ``Draft202012Validator.check_schema`` walks the meta-schema's ``$dynamicRef`` chain through
# eight vocabulary documents for every subschema: ~9 ms on a typical MaskBench schema, the
# largest part of a compile. :func:`_meta_ok` checks the same keywords directly. It only
# ever answers "valid for sure" (``True``) or "not sure" (``False``): on ``False`` the full
# ``check_schema`` runs, so a bad schema gets jsonschema's exact error, and a value the
# shortcut does not know how to judge (``1.0`` as ``minItems``, ``$vocabulary``) is judged
# by jsonschema too.
_SIMPLE_TYPES = frozenset(("array", "boolean", "integer", "null", "number", "object", "string"))
_META_ONE = frozenset(_SCHEMA_ONE) | {"contentSchema"}
_META_MAPS = frozenset(
    ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
)
_META_LISTS = frozenset(("allOf", "anyOf", "oneOf", "prefixItems"))
_META_NUM = frozenset(("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"))
_META_NONNEG = frozenset(
    "maxLength minLength maxItems minItems maxContains minContains maxProperties "
    "minProperties".split()
)
_META_BOOL = frozenset(("uniqueItems", "deprecated", "readOnly", "writeOnly"))
_META_STR = frozenset(
    ("title", "description", "$comment", "format", "contentEncoding", "contentMediaType")
)
_META_URIREF = frozenset(("$ref", "$dynamicRef", "$recursiveRef"))
_META_ANCHOR = frozenset(("$anchor", "$dynamicAnchor", "$recursiveAnchor"))
_META_SURE = frozenset(("const", "default"))  # any JSON value
_ANCHOR_RX = re.compile(r"^[A-Za-z_][-A-Za-z0-9._]*$")
_ID_RX = re.compile(r"^[^#]*#?$")


#: The dialects the shortcut knows, by validator class: 4, 6, 7 (draft-0x) and 2020 (2020-12).
_META_DRAFTS = {
    jsonschema.Draft4Validator: 4,
    jsonschema.Draft6Validator: 6,
    jsonschema.Draft7Validator: 7,
    jsonschema.Draft202012Validator: 2020,
}
_CHECKERS = {d: cls.FORMAT_CHECKER for cls, d in _META_DRAFTS.items()}


def _conforms(value: Any, fmt: str, d: int = 2020) -> bool:
    return _CHECKERS[d].conforms(value, fmt)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _str_set(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)


def _meta_ok(node: Any, d: int = 2020) -> bool:  # noqa: C901
    """``True`` only if ``node`` is valid for dialect ``d``'s meta-schema with format checking.

    ``d`` is 4, 6, 7 or 2020 (see :data:`_META_DRAFTS`). The checks are 2020-12's, with
    the older drafts' rules where theirs are looser or different (boolean schemas,
    ``exclusiveMinimum``, ``items`` arrays, non-empty ``required``/``enum`` in draft-04);
    a check stricter than the dialect's only sends more schemas to ``check_schema``.
    """
    if isinstance(node, bool):
        return d != 4
    if not isinstance(node, dict):
        return False
    for k, v in node.items():
        if d == 4 and k in ("additionalItems", "additionalProperties") and isinstance(v, bool):
            ok = True
        elif d != 2020 and k == "items" and isinstance(v, list):
            ok = len(v) > 0 and all(_meta_ok(s, d) for s in v)
        elif d != 2020 and k == "additionalItems":
            ok = _meta_ok(v, d)
        elif d == 4 and k in ("exclusiveMinimum", "exclusiveMaximum"):
            ok = isinstance(v, bool) and k.replace("exclusiveM", "m") in node
        elif d == 4 and k in ("required", "enum"):
            ok = _str_set(v) and len(v) > 0  # draft-04 enum: non-empty, unique (strings here)
        elif d == 4 and k == "id":
            ok = isinstance(v, str)
        elif d == 4 and k == "dependencies":
            ok = isinstance(v, dict) and all(
                (_str_set(x) and len(x) > 0) or _meta_ok(x, d) for x in v.values()
            )
        elif k in _META_ONE:
            ok = _meta_ok(v, d)
        elif k in _META_MAPS:
            ok = isinstance(v, dict) and all(_meta_ok(s, d) for s in v.values())
            if ok and k == "patternProperties":
                ok = all(_conforms(p, "regex", d) for p in v)
        elif k in _META_LISTS:
            ok = isinstance(v, list) and len(v) > 0 and all(_meta_ok(s, d) for s in v)
        elif k == "type":
            if isinstance(v, str):
                ok = v in _SIMPLE_TYPES
            else:
                ok = _str_set(v) and len(v) > 0 and all(x in _SIMPLE_TYPES for x in v)
        elif k in _META_NUM:
            ok = _is_num(v)
        elif k == "multipleOf":
            ok = _is_num(v) and v > 0
        elif k in _META_NONNEG:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif k in _META_BOOL:
            ok = isinstance(v, bool)
        elif k in _META_STR:
            ok = isinstance(v, str)
        elif k == "pattern":
            ok = isinstance(v, str) and _conforms(v, "regex", d)
        elif k in _META_URIREF:
            ok = isinstance(v, str) and _conforms(v, "uri-reference", d)
        elif k == "$id":
            ok = isinstance(v, str) and bool(_ID_RX.search(v)) and _conforms(v, "uri-reference", d)
        elif k == "$schema":
            ok = isinstance(v, str) and _conforms(v, "uri", d)
        elif k in _META_ANCHOR:
            ok = isinstance(v, str) and bool(_ANCHOR_RX.search(v))
        elif k in ("enum", "examples"):
            ok = isinstance(v, list)
        elif k == "required":
            ok = _str_set(v)
        elif k == "dependentRequired":
            ok = isinstance(v, dict) and all(_str_set(x) for x in v.values())
        elif k == "dependencies":
            ok = isinstance(v, dict) and all(_str_set(x) or _meta_ok(x, d) for x in v.values())
        elif k in _META_SURE:
            ok = True
        elif k == "$vocabulary":
            ok = False  # rare: left to jsonschema
        else:
            ok = True  # the meta-schemas say nothing about other keywords
        if not ok:
            return False
    return True


def _ptr_escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _lit_pattern(name: str) -> str:
    return "^" + "".join("\\" + ch if ch in _RX_META else ch for ch in name) + "$"


def _overlap(patterns: dict, names: dict) -> bool:
    try:
        return any(re.search(p, n) for p in patterns for n in names)
    except re.error:
        return True


_OBJECT_KW = ("properties", "patternProperties", "additionalProperties", "required")


def _strip_object(branch: Any) -> Any:
    if isinstance(branch, dict):
        return {k: v for k, v in branch.items() if k not in _OBJECT_KW}
    return branch


def _spelling_sensitive(values: list) -> bool:
    """Whether llguidance could miss another spelling of one of ``values``.

    True for a number or an object of two or more keys (strings are matched in their
    canonical spelling, see :mod:`potentia.constraints.json_spelling`).
    """
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return True
        if isinstance(v, list) and _spelling_sensitive(v):
            return True
        if isinstance(v, dict) and (len(v) > 1 or _spelling_sensitive(list(v.values()))):
            return True
    return False


def _const_schema(v: Any) -> Any:
    """A schema for the shape of the JSON value ``v``: any number spelling, any key order."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return {"type": "number"}
    if isinstance(v, list):
        items = [_const_schema(x) for x in v]
        return {"type": "array", "prefixItems": items, "minItems": len(v), "maxItems": len(v)}
    if isinstance(v, dict):
        return {
            "type": "object",
            "properties": {k: _const_schema(x) for k, x in v.items()},
            "required": list(v),
            "additionalProperties": False,
        }
    return {"const": v}


def _number_for_integer(t: Any) -> Any:
    if t == "integer":
        return "number"
    if isinstance(t, list) and "integer" in t:
        return list(dict.fromkeys("number" if x == "integer" else x for x in t))
    return t


#: Formats whose jsonschema check implies a regex (jsonschema's own ``_RE_DATE`` for
#: ``date``): with formats asserted, the engine gets the regex as a ``pattern`` (where the
#: node has none), so the prefix already follows it; the language is unchanged.
FORMAT_PATTERNS = {"date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}


class _Relaxer:
    """Build the engine-side superset schema, remembering moved JSON pointers."""

    def __init__(
        self, any_order: bool, drop: set[str], safe_patterns: bool, formats: bool = False
    ) -> None:
        self.any_order, self.drop, self.safe_patterns = any_order, drop, safe_patterns
        self.formats = formats
        self.moved: list[tuple[str, str]] = []

    def run(self, s: Any, ptr: str = "") -> Any:  # noqa: C901
        if not isinstance(s, dict):
            return s
        out: dict[str, Any] = {}
        fmt = s.get("format")
        if (
            self.formats
            and isinstance(fmt, str)
            and fmt in FORMAT_PATTERNS
            and "pattern" not in s
            and "pattern" not in self.drop
        ):
            out["pattern"] = FORMAT_PATTERNS[fmt]
        for k, v in s.items():
            if k in self.drop or k not in EARLY and k not in ("multipleOf", "required"):
                continue
            if k in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(v, bool):
                continue  # draft-04 modifier: dropping it keeps a superset
            if k == "items" and isinstance(v, list):  # draft-04..2019-09 tuple form
                out["prefixItems"] = [self.run(sub, f"{ptr}/items/{i}") for i, sub in enumerate(v)]
                continue
            if k in ("enum", "const") and _spelling_sensitive(v if k == "enum" else [v]):
                # llguidance matches numbers and object key orders as written in the schema:
                # the engine gets the value's shape (any spelling); the value is checked late
                alts = v if k == "enum" else [v]
                branch = {"anyOf": list({json.dumps(a): _const_schema(a) for a in alts}.values())}
                out["allOf"] = out.get("allOf", []) + [self.run(branch, f"{ptr}/{k}")]
                continue
            if k == "multipleOf":
                continue  # any spelling of a number (1.0 is an integer): checked late
            if k == "type":  # `1.0` is an integer in JSON Schema; llguidance's integer is not
                v = _number_for_integer(v)
            if k == "required":
                if not self.any_order:
                    out[k] = v
                continue
            p = f"{ptr}/{_ptr_escape(k)}"
            if k in _SCHEMA_MAPS and isinstance(v, dict):
                out[k] = {n: self.run(sub, f"{p}/{_ptr_escape(n)}") for n, sub in v.items()}
            elif k in _SCHEMA_LISTS and isinstance(v, list):
                out[k] = [self.run(sub, f"{p}/{i}") for i, sub in enumerate(v)]
            elif k in _SCHEMA_ONE:
                out[k] = self.run(v, p)
            else:
                out[k] = v
        if self.any_order and ("properties" in out or "patternProperties" in out):
            # llguidance mis-merges object keywords of sibling branches with the parent's
            # patternProperties; keep the branches' non-object keywords only (a superset).
            for k in ("allOf", "anyOf", "oneOf"):
                if isinstance(out.get(k), list):
                    out[k] = [_strip_object(a) for a in out[k]]
        for k in ("allOf", "anyOf", "oneOf"):  # a `true` branch makes anyOf/oneOf vacuous
            alts = out.get(k)
            if isinstance(alts, list):
                kept = [a for a in alts if a is not True and a != {}]
                if k == "allOf" and kept != alts:
                    out[k] = kept
                if not kept or (k != "allOf" and len(kept) < len(alts)):
                    out.pop(k)
        if "oneOf" in out:  # exclusivity is checked at completion
            alts = out.pop("oneOf")
            if "anyOf" in out:
                out["allOf"] = out.get("allOf", []) + [{"anyOf": alts}]
            else:
                out["anyOf"] = alts
        if self.any_order and isinstance(out.get("properties"), dict):
            self._unorder(out, ptr)
        return out

    def _unorder(self, out: dict[str, Any], ptr: str) -> None:
        props = out.pop("properties")
        pats = dict(out.get("patternProperties", {}))
        clash = self.safe_patterns and pats and (len(pats) > 1 or _overlap(pats, props))
        if clash:
            out["additionalProperties"] = True
        if clash:
            pats = {}
        for name, sub in props.items():
            pat = _lit_pattern(name)
            pats[pat] = sub
            self.moved.append(
                (
                    f"{ptr}/properties/{_ptr_escape(name)}",
                    f"{ptr}/patternProperties/{_ptr_escape(pat)}",
                )
            )
        out["patternProperties"] = pats

    def fix_refs(self, s: Any) -> Any:
        if isinstance(s, dict):
            out = {k: self.fix_refs(v) for k, v in s.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                for old, new in sorted(self.moved, key=lambda m: -len(m[0])):
                    if ref[1:] == old or ref[1:].startswith(old + "/"):
                        out["$ref"] = "#" + new + ref[1 + len(old) :]
                        break
            return out
        if isinstance(s, list):
            return [self.fix_refs(x) for x in s]
        return s


def relax_schema(
    schema: dict | bool,
    property_order: Literal["any", "schema"] = "any",
    drop: set[str] | None = None,
    safe_patterns: bool = False,
    formats: bool = False,
) -> dict | bool:
    """The superset schema given to the engine (see the module docstring).

    Args:
        schema: A JSON Schema (dict or boolean).
        property_order: ``"any"`` (JSON semantics) or ``"schema"``.
        drop: Extra keywords to drop everywhere.
        safe_patterns: Drop ``patternProperties`` that could overlap named properties.
        formats: ``format`` is asserted at completion: formats whose check implies a
            regex (:data:`FORMAT_PATTERNS`) give the engine that regex as a ``pattern``.
    """
    r = _Relaxer(property_order == "any", set(drop or ()), safe_patterns, formats)
    return r.fix_refs(r.run(schema))


def _scan_refs(schema: Any) -> None:
    """Refuse ``$ref``s that leave the schema (remote documents)."""
    ids: set[str] = {""}
    refs: list[tuple[str, str, str]] = []

    def walk(node: Any, base: str, ptr: str) -> None:
        if isinstance(node, list):
            for i, x in enumerate(node):
                walk(x, base, f"{ptr}/{i}")
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("$id"), str):
            base = urldefrag(urljoin(base, node["$id"]))[0]
            ids.add(base)
        for kw in ("$ref", "$dynamicRef"):
            if isinstance(node.get(kw), str):
                refs.append((kw, urljoin(base, node[kw]), f"{ptr}/{kw}"))
        for k, v in node.items():
            if k in ("enum", "const", "examples", "default"):
                continue
            walk(v, base, f"{ptr}/{_ptr_escape(k)}")

    walk(schema, "", "")
    for kw, url, ptr in refs:
        doc = urldefrag(url)[0]
        if doc in ids:
            continue
        try:
            jsonschema_specifications.REGISTRY.contents(doc)
        except Exception:
            raise ValueError(
                f"`schema` keyword `{kw}` at JSON pointer {ptr or '/'!r} refers to {doc!r}, a "
                "document outside the schema; remote references cannot be checked offline. "
                "Inline the referenced schema under `$defs` and point to it with '#/$defs/...'."
            ) from None


def _bounds_reason(node: dict, types: set[str] | None) -> str | None:
    """Why the size or numeric bounds of ``node`` admit nothing of its only type(s)."""
    pairs = [
        ("string", "minLength", "maxLength"),
        ("array", "minItems", "maxItems"),
        ("object", "minProperties", "maxProperties"),
    ]
    for kind, lo, hi in pairs:
        if types == {kind} and isinstance(node.get(lo), int) and isinstance(node.get(hi), int):
            if node[lo] > node[hi]:
                return f"has `{lo}` {node[lo]} > `{hi}` {node[hi]}"
    if not types or not types <= {"integer", "number"}:
        return None

    def num(k: str) -> float | None:
        v = node.get(k)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    lo, hi, xlo, xhi = (
        num("minimum"),
        num("maximum"),
        num("exclusiveMinimum"),
        num("exclusiveMaximum"),
    )
    low = max((v for v in (lo, xlo) if v is not None), default=None)
    high = min((v for v in (hi, xhi) if v is not None), default=None)
    if low is None or high is None:
        return None
    open_low = xlo is not None and xlo == low and (lo is None or lo <= xlo)
    open_high = xhi is not None and xhi == high and (hi is None or hi >= xhi)
    if types == {"integer"}:
        first = math.floor(low) + 1 if open_low else math.ceil(low)
        last = math.ceil(high) - 1 if open_high else math.floor(high)
        if first > last:
            return f"admits no integer between its bounds ({low:g} and {high:g})"
    elif low > high or (low == high and (open_low or open_high)):
        return f"admits no number between its bounds ({low:g} and {high:g})"
    return None


def _empty_reason(node: Any, cls: type) -> str | None:
    """Why ``node`` admits no JSON value by its own keywords (not its subschemas), or ``None``."""
    if node is False:
        return "is `false`"
    if not isinstance(node, dict):
        return None
    t = node.get("type")
    types = {t} if isinstance(t, str) else set(t) if isinstance(t, list) else None
    if types == set():
        return "has an empty `type` list"
    why = _bounds_reason(node, types)
    if why:
        return why
    if "enum" in node or "const" in node:
        values = node["enum"] if "enum" in node else [node["const"]]
        rest = {k: v for k, v in node.items() if k not in ("enum", "const")}
        rest = {k: v for k, v in rest.items() if k not in _SUBSCHEMA_KW}
        if values == []:
            return "has an empty `enum`"
        if isinstance(values, list) and not any(cls(rest).is_valid(v) for v in values):
            what = "`enum` value" if "enum" in node else "`const` value"
            return f"has no {what} that satisfies its other keywords ({sorted(rest)})"
    return None


#: Keywords whose values hold subschemas or references (left out of the local check).
_SUBSCHEMA_KW = frozenset(
    "$ref $dynamicRef allOf anyOf oneOf not if then else properties patternProperties "
    "additionalProperties items prefixItems contains propertyNames dependentSchemas "
    "unevaluatedItems unevaluatedProperties $defs definitions".split()
)


def _check_satisfiable(schema: Any, cls: type) -> None:
    """Refuse a schema whose language is plainly empty.

    That is an unsatisfiable node on a path every valid document must take (the root, a required property, ``allOf``, the items
    that ``minItems`` forces, every branch of an ``anyOf``/``oneOf``, a local ``$ref``).

    Raises:
        ValueError: naming the JSON pointer and the contradiction.
    """
    resolver = None
    seen: set[str] = set()

    def lookup(ref: str) -> Any:
        nonlocal resolver
        if resolver is None:
            spec = referencing.jsonschema.specification_with(
                cls.META_SCHEMA.get("$schema", "https://json-schema.org/draft/2020-12/schema")
            )
            resource = spec.create_resource(schema)
            resolver = referencing.Registry().with_resource("", resource).crawl().resolver()
        return resolver.lookup(ref).contents

    def fail(ptr: str, why: str) -> ValueError:
        return ValueError(
            f"`schema` at JSON pointer {ptr or '/'!r} {why}, and every valid document must "
            "satisfy it there, so no document is valid (the constraint's language is empty). "
            "Fix the contradictory keywords."
        )

    def visit(node: Any, ptr: str) -> None:
        why = _empty_reason(node, cls)
        if why:
            raise fail(ptr, why)
        if not isinstance(node, dict):
            return
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        for name in node.get("required", []) if isinstance(node.get("required"), list) else []:
            if name in props:
                visit(props[name], f"{ptr}/properties/{_ptr_escape(name)}")
        for i, sub in enumerate(
            node.get("allOf", []) if isinstance(node.get("allOf"), list) else []
        ):
            visit(sub, f"{ptr}/allOf/{i}")
        for kw in ("anyOf", "oneOf"):
            alts = node.get(kw)
            if isinstance(alts, list) and alts:
                reasons = []
                for i, sub in enumerate(alts):
                    try:
                        visit(sub, f"{ptr}/{kw}/{i}")
                        break
                    except ValueError as e:
                        reasons.append(e)
                else:
                    raise fail(f"{ptr}/{kw}", "has no satisfiable branch") from reasons[0]
        n = node.get("minItems", 0) if isinstance(node.get("minItems"), int) else 0
        pre = node.get("prefixItems") if isinstance(node.get("prefixItems"), list) else []
        for i, sub in enumerate(pre[:n]):
            visit(sub, f"{ptr}/prefixItems/{i}")
        if n > len(pre) and isinstance(node.get("items"), dict | bool):
            visit(node["items"], f"{ptr}/items")
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and ref not in seen:
            seen.add(ref)
            try:
                target = lookup(ref)
            except referencing.exceptions.Unresolvable:
                return  # under an $id base: left to _scan_refs and the validator
            visit(target, ref[1:])

    visit(schema, "")

    def reach(node: Any, ptr: str) -> None:  # every $ref an evaluation can meet resolves
        if isinstance(node, list):
            for i, x in enumerate(node):
                reach(x, f"{ptr}/{i}")
            return
        if not isinstance(node, dict) or "$id" in node or "id" in node:
            return  # a new base URI: resolved by the validator, not here
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and ref not in reached:
            reached.add(ref)
            try:
                target = lookup(ref)
            except referencing.exceptions.Unresolvable:
                raise ValueError(
                    f"`schema` keyword `$ref` at JSON pointer {ptr + '/$ref'!r} points to "
                    f"{ref!r}, which does not exist in the schema. Define it (e.g. under "
                    "`$defs`) or fix the reference."
                ) from None
            reach(target, ref[1:])
        for k, v in node.items():
            if k not in ("$defs", "definitions", "enum", "const", "examples", "default"):
                reach(v, f"{ptr}/{_ptr_escape(k)}")

    reached: set[str] = set()
    reach(schema, "")


#: Subschema keywords whose schemas are *conjoined* with the node (restricting one of
#: them restricts the whole): a closed object there could contradict its siblings.
_CONJOINED = ("allOf", "then", "else", "dependentSchemas", "not", "if", "contains")
_MERGING = ("allOf", "$ref", "$dynamicRef", "if", "dependentSchemas", "unevaluatedProperties")


def restrict_schema(schema: Any, forbid_extra: bool = True, int_digits: int | None = 15) -> Any:
    """The structured-output restriction of ``schema`` (``mode="structured"``).

    * ``forbid_extra``: an object schema that lists ``properties`` and says nothing about
      other keys (no ``additionalProperties``, ``patternProperties`` or
      ``unevaluatedProperties``) gets ``additionalProperties: false`` — Pydantic's
      ``extra="forbid"``. Only where that cannot contradict a sibling: not inside
      ``allOf``/``not``/``if``/``then``/``else``/``dependentSchemas``, not on a node that
      merges with others (``allOf``, ``$ref``, ...), and not in a ``$defs`` entry that is
      referenced from such a place.
    * ``int_digits``: an ``integer`` without an upper (lower) bound gets
      ``maximum: 10**d - 1`` (``minimum: -(10**d - 1)``).

    The result is the schema the constraint's target is defined by; ``schema`` is not
    changed.
    """
    unsafe_refs: set[str] = set()

    def walk(node: Any, ptr: str, safe: bool, out_refs: set[str]) -> Any:
        if isinstance(node, list):
            return [walk(x, f"{ptr}/{i}", safe, out_refs) for i, x in enumerate(node)]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and not safe:
            out_refs.add(ref)
        out = dict(node)
        merges = any(k in node for k in _MERGING)
        objecty = any(
            k in node for k in ("properties", "patternProperties", "additionalProperties")
        )
        for k, v in node.items():
            p = f"{ptr}/{_ptr_escape(k)}"
            if k in ("enum", "const", "default", "examples"):
                continue
            if k in ("$defs", "definitions") and isinstance(v, dict):
                out[k] = {
                    n: walk(
                        sub,
                        f"{p}/{_ptr_escape(n)}",
                        f"#{p}/{_ptr_escape(n)}" not in unsafe_refs,
                        out_refs,
                    )
                    for n, sub in v.items()
                }
            elif k in _CONJOINED:
                out[k] = walk(v, p, False, out_refs)
            elif k in ("anyOf", "oneOf"):
                out[k] = walk(v, p, safe and not objecty, out_refs)
            elif isinstance(v, dict | list) and k not in ("required", "type", "enum"):
                if k in ("properties", "patternProperties", "$defs", "definitions"):
                    out[k] = (
                        {
                            n: walk(sub, f"{p}/{_ptr_escape(n)}", safe, out_refs)
                            for n, sub in v.items()
                        }
                        if isinstance(v, dict)
                        else v
                    )
                else:
                    out[k] = walk(v, p, safe, out_refs)
        if (
            forbid_extra
            and safe
            and not merges
            and isinstance(node.get("properties"), dict)
            and not any(
                k in node
                for k in ("additionalProperties", "patternProperties", "unevaluatedProperties")
            )
        ):
            out["additionalProperties"] = False
        t = node.get("type")
        types = {t} if isinstance(t, str) else set(t) if isinstance(t, list) else set()
        if int_digits is not None and "integer" in types and "number" not in types:
            bound = 10**int_digits - 1
            if "maximum" not in node and "exclusiveMaximum" not in node:
                out["maximum"] = bound
            if "minimum" not in node and "exclusiveMinimum" not in node:
                out["minimum"] = -bound
        return out

    for _ in range(8):  # refs made from unsafe places make their $defs unsafe: a fixpoint
        found: set[str] = set()
        result = walk(schema, "", True, found)
        if found <= unsafe_refs:
            return result
        unsafe_refs |= found
    return walk(schema, "", False, set())


def _validator_class(schema: Any) -> type:
    """The jsonschema validator of the schema's dialect (2020-12 by default).

    Raises:
        ValueError: for a ``$schema`` that is not a known dialect (a custom meta-schema's
            vocabularies cannot be honoured offline).
    """
    if isinstance(schema, dict) and isinstance(schema.get("$schema"), str):
        uri = schema["$schema"]
        cls = jsonschema.validators.validator_for(schema, default=None)
        if cls is None:
            raise ValueError(
                f"`schema` keyword `$schema` at JSON pointer '/$schema' is {uri!r}, not a known "
                "JSON Schema dialect (draft-04, -06, -07, 2019-09, 2020-12); its vocabularies "
                "cannot be checked offline. Remove `$schema` or use a standard dialect."
            )
        return cls
    return jsonschema.Draft202012Validator


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class JSONSchema(LLGConstraint):
    """JSON documents valid for a JSON Schema or Pydantic model (see the module docstring).

    Args:
        schema: A JSON Schema (dict, bool or JSON string) or a Pydantic model class.
        mode: ``"structured"`` (default: structured output as a user wants it, a declared
            restriction of the schema's language, see :data:`MODES`) or ``"any"`` (every
            JSON text valid for the schema: any whitespace, any key order).
        whitespace: ``"json"`` (any JSON whitespace), ``"dumps"`` (``json.dumps``'s
            ``", "`` and ``": "``, nothing else) or ``"none"`` (compact). Default: the
            mode's.
        property_order: ``"any"`` (JSON semantics) or ``"schema"``. Default: the mode's.
        formats: Assert ``format`` with jsonschema's format checker (default ``True``);
            ``False`` treats ``format`` as an annotation, the 2020-12 default.
        vocab: The vocabulary (default: bytes; use :meth:`lift` for a token vocabulary).
        limits: llguidance resource limits (see :class:`~potentia.constraints.llg.LLGConstraint`).
        extra: ``"forbid"`` (object schemas that list ``properties`` take no other keys
            unless they say so) or ``"schema"`` (as written). Default: the mode's.
        int_digits: Integers without a bound get ``|n| < 10**int_digits`` (``None``: as
            written). Default: the mode's (15 when structured).

    Attributes:
        target_schema: The schema that defines the language: ``schema`` with the mode's
            restrictions (:func:`restrict_schema`).
        ends_itself: ``True``: ``pt.sample`` lets the LM stop by itself once the value is
            closed (:class:`~potentia.potentials.ops.AutoStop`).
    """

    ends_itself = True

    def __init__(
        self,
        schema: Any,
        whitespace: Literal["json", "dumps", "none"] | None = None,
        property_order: Literal["any", "schema"] | None = None,
        formats: bool = True,
        vocab: Vocabulary | None = None,
        limits: dict | None = None,
        *,
        mode: Literal["structured", "any"] = "structured",
        extra: Literal["forbid", "schema"] | None = None,
        int_digits: int | None | Literal["mode"] = "mode",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"`mode` is {mode!r}; use 'structured' or 'any'.")
        defaults = MODES[mode]
        whitespace = defaults["whitespace"] if whitespace is None else whitespace
        property_order = defaults["property_order"] if property_order is None else property_order
        extra = defaults["extra"] if extra is None else extra
        int_digits = defaults["int_digits"] if int_digits == "mode" else int_digits
        if extra not in ("forbid", "schema"):
            raise ValueError(f"`extra` is {extra!r}; use 'forbid' or 'schema'.")
        if int_digits is not None and not (isinstance(int_digits, int) and int_digits >= 1):
            raise ValueError(f"`int_digits` is {int_digits!r}; pass an int >= 1 or None.")
        self.mode = mode
        self.model = None
        if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
            self.model = schema
            schema = schema.model_json_schema()
        elif isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as e:
                raise ValueError(f"`schema` is a string but not JSON: {e}.") from e
        if not isinstance(schema, dict | bool):
            raise TypeError(
                f"`schema` is {type(schema).__name__}; pass a JSON Schema dict, a boolean "
                "schema, its JSON text, or a Pydantic model class."
            )
        if schema is False:
            raise ValueError("`schema` is `false`: the language is empty (no document is valid).")
        if whitespace not in ("json", "dumps", "none"):
            raise ValueError(f"`whitespace` is {whitespace!r}; use 'json', 'dumps' or 'none'.")
        if property_order not in ("any", "schema"):
            raise ValueError(f"`property_order` is {property_order!r}; use 'any' or 'schema'.")
        cls = _validator_class(schema)
        try:
            if cls not in _META_DRAFTS or not _meta_ok(schema, _META_DRAFTS[cls]):
                cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            where = "/" + "/".join(_ptr_escape(str(p)) for p in e.path)
            raise ValueError(
                f"`schema` is not a valid JSON Schema ({cls.__name__}): keyword "
                f"`{e.path[-1] if e.path else e.validator}` at JSON pointer {where!r}: "
                f"{e.message}. Fix the schema (see the 2020-12 meta-schema)."
            ) from None
        _scan_refs(schema)
        _check_satisfiable(schema, cls)
        self.schema, self.whitespace, self.property_order = schema, whitespace, property_order
        self.extra, self.int_digits = extra, int_digits
        self._formats = bool(formats)
        target = schema
        if extra == "forbid" or int_digits is not None:
            target = restrict_schema(schema, extra == "forbid", int_digits)
        self.target_schema = target
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER if formats else None
        self.validator = cls(target, format_checker=checker)
        self.limits = _check_limits(limits)
        self.fallback: str | None = None
        self.relaxed, lark, root = self._engine_grammar(target)
        super().__init__(
            lark, None, check=self._valid, name="json", check_exact=True, limits=limits, _root=root
        )
        if vocab is not None and vocab != self.vocab:
            self._compile(vocab)

    def _lark(self, relaxed: Any) -> str:
        if self.whitespace in ("none", "dumps"):
            sep = (",", ":") if self.whitespace == "none" else (", ", ": ")
            opts = {"whitespace_flexible": False, "item_separator": sep[0], "key_separator": sep[1]}
            body = f"%json {json.dumps(_with_options(relaxed, opts))}"
            return f"start: {body}\n"
        body = f"%json {json.dumps(_with_options(relaxed, {'whitespace_flexible': True}))}"
        return f"start: WS? value WS?\nvalue: {body}\nWS: /[ \\t\\n\\r]+/\n"

    def _engine_grammar(self, schema: Any) -> tuple[Any, str, llguidance.LLMatcher]:
        """Relax until llguidance compiles it; the last resort is any JSON value.

        Each attempt builds the byte-level root matcher directly (the constructor validates
        the grammar), so a grammar is compiled and validated once, and the matcher that
        validated it is the one the constraint keeps.
        """
        drop: set[str] = set()
        safe = False
        tok = llg_tokenizer(bytes_vocab())
        lim = LLGConstraint._llg_limits(self, 1)
        err = ""
        for _ in range(8):
            relaxed = relax_schema(schema, self.property_order, drop, safe, self._formats)
            lark = self._lark(relaxed)
            grammar = llguidance.LLMatcher.grammar_from_lark(NO_FORCING + lark)
            root = llguidance.LLMatcher(tok, grammar, log_level=0, limits=lim)
            if not root.is_error():
                return relaxed, lark, root
            err = root.get_error()
            m = re.search(r"Unimplemented keys: \[([^\]]*)\]", err)
            if m:
                drop |= {k.strip().strip('"') for k in m.group(1).split(",")}
            elif "not disjoint" in err and not safe:
                safe = True
            else:
                break
        self.fallback = err
        lark = self._lark(True)
        grammar = llguidance.LLMatcher.grammar_from_lark(NO_FORCING + lark)
        return True, lark, llguidance.LLMatcher(tok, grammar, log_level=0, limits=lim)

    # ----- reading through the spelling transducer (see json_spelling) ---------------
    def _spelling(self) -> Spelling:
        # keyed by the vocabulary object this copy holds: Spelling.of may hand back the one
        # built for an equal vocabulary, and an equality check on every read is not free
        sp = self.__dict__.get("_sp")
        if sp is None or self.__dict__.get("_sp_vocab") is not self.vocab:
            sp = self._sp = Spelling.of(self.vocab)
            self._sp_vocab = self.vocab
        return sp

    def _row_start(self) -> Lex:
        return START

    def _tokens(self, context: list[int]) -> list[int]:
        return self._spelling().walk(super()._tokens(context))[1]

    def _where(self, aux: Lex) -> str:
        if aux[1]:
            return "inside an escape of a JSON string"
        return "inside a JSON string" if aux[0] else "inside an unclosed JSON value"

    def _aux_of(self, context: list[int]) -> Lex:
        return self._spelling().walk(super()._tokens(context))[0]

    def _run(self, context: list[int]) -> llguidance.LLMatcher | None:
        m = super()._run(context)
        if m is None:
            return None
        pend = self._aux_of(context)[1]
        return m if not pend or self._spelling().pending_ok(m, pend) else None

    def _read(self, m: llguidance.LLMatcher, aux: Lex, t: int, consume: bool) -> tuple[bool, Lex]:
        sp = self._spelling()
        new, out = sp.step(aux, t)
        toks = [t] if out is None else out
        if consume:
            ok = not toks or m.try_consume_tokens(toks) == len(toks)
            # an unfinished escape at the end must still be able to give a character
            return ok and (not new[1] or sp.pending_ok(m, new[1])), new
        if new[1]:
            # the escape can give a character only where its head is viable (viability is
            # prefix-closed): one native check saves the character search where the head is
            # refused, as for most of the ~360 backslash-ending tokens at a constrained spot
            if toks and m.validate_tokens(toks) != len(toks):
                return False, new
            head = b"".join(self.vocab.tokens[x] for x in toks)
            return sp.pending_ok(m, new[1], head), new
        return not toks or m.validate_tokens(toks) == len(toks), new

    def _fix_bits(
        self, matchers: list[llguidance.LLMatcher], auxes: list[Lex], bits: np.ndarray
    ) -> None:
        sp = self._spelling()
        for i, (m, aux) in enumerate(zip(matchers, auxes)):
            if not aux[1]:  # only the tokens the transducer rewrites differ from the mask
                cands = sp.special[aux[0]]
            else:  # inside an unfinished escape: tokens that can continue it
                cands = sp.continuing(aux[1])
                bits[i] = False
            for t in cands.tolist():
                bits[i, t] = self._read(m, aux, t, False)[0]

    def _valid(self, data: bytes) -> bool:
        try:
            text = data.decode("utf-8")
            value = json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_no_constant)
        except ValueError:
            return False
        if not self.validator.is_valid(value):
            return False
        if self.model is not None:
            try:
                self.model.model_validate_json(text)
            except Exception:
                return False
        return True

    @property
    def late_keywords(self) -> list[str]:
        """Keywords of this schema enforced only at completion."""
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    if k in LATE:
                        found.add(k)
                    if k not in ("enum", "const", "default", "examples"):
                        walk(v)
            elif isinstance(node, list):
                for x in node:
                    walk(x)

        walk(self.schema)
        return sorted(found)


#: The defaults of each ``mode`` of :class:`JSONSchema`.
MODES: dict[str, dict[str, Any]] = {
    # what a user of structured output wants: one spelling (json.dumps's), the schema's key
    # order (``required`` enforced while writing), no keys the schema does not list,
    # integers of at most 15 digits unless bounded: a declared restriction of the target
    "structured": {
        "whitespace": "dumps",
        "property_order": "schema",
        "extra": "forbid",
        "int_digits": 15,
    },
    # every JSON text valid for the schema, exactly
    "any": {"whitespace": "json", "property_order": "any", "extra": "schema", "int_digits": None},
}

#: Engine options on every schema: ``\\uXXXX`` escapes of any character (and surrogate
#: pairs) in strings without a regex-like constraint.
_ESCAPES = {"json_allow_general_unicode_escapes": True}


def _with_options(relaxed: Any, opts: dict) -> Any:
    opts = {**_ESCAPES, **opts}
    if relaxed is True:
        relaxed = {}
    if relaxed is False:
        return relaxed
    return {**relaxed, "x-guidance": opts}


def json_schema(
    schema: Any,
    whitespace: Literal["json", "dumps", "none"] | None = None,
    property_order: Literal["any", "schema"] | None = None,
    formats: bool = True,
    limits: dict | None = None,
    *,
    mode: Literal["structured", "any"] = "structured",
    extra: Literal["forbid", "schema"] | None = None,
    int_digits: int | None | Literal["mode"] = "mode",
) -> JSONSchema:
    """A byte-level hard constraint: the output is a JSON document valid for ``schema``.

    Two modes. ``"structured"`` (default) is what a user of structured output wants, a
    declared restriction of the schema's language: ``json.dumps``'s spelling (``", "``,
    ``": "``, no other whitespace), properties in the schema's order (``required`` keys
    enforced while writing, no key twice), no keys an object schema does not list unless
    it says so (Pydantic's ``extra="forbid"``), integers of at most 15 digits unless the
    schema bounds them; and ``pt.sample`` lets the LM stop by itself once the value is
    closed (target ``P_LM(x…)`` there: no EOS string needed). ``"any"`` admits every JSON
    text valid for the schema (any whitespace, any key order), exactly.

    Args:
        schema: A JSON Schema (draft 2020-12; dict, bool or JSON text) or a Pydantic model.
        whitespace: ``"json"`` (any JSON whitespace), ``"dumps"`` or ``"none"`` (compact).
        property_order: ``"any"`` (JSON semantics) or ``"schema"`` (the schema's order,
            ``required`` enforced early).
        formats: Assert ``format`` (default) or treat it as an annotation.
        limits: llguidance resource limits, e.g. ``{"step_lexer_fuel": 2_000_000}``; only
            needed when a query raises ``EngineLimitError`` (queries already retry on a
            fresh matcher with these limits raised 10x and 100x).
        mode: ``"structured"`` or ``"any"``; sets the defaults of the other options.
        extra: ``"forbid"`` or ``"schema"`` (see :func:`restrict_schema`).
        int_digits: The digit bound of unbounded integers, or ``None``.

    Raises:
        ValueError: if the schema is invalid, plainly empty, or uses a remote ``$ref``.

    Example:
        >>> import potentia as pt
        >>> c = pt.json({"type": "array", "items": {"type": "integer"}, "uniqueItems": True})
        >>> c.complete(list(b"[1, 2]")), c.complete(list(b"[1, 1]")), c.complete(list(b"[1,2]"))
        (0.0, -inf, -inf)
        >>> pt.json({"type": "array"}, mode="any").complete(list(b"[1,2]"))
        0.0
    """
    return JSONSchema(
        schema,
        whitespace,
        property_order,
        formats,
        limits=limits,
        mode=mode,
        extra=extra,
        int_digits=int_digits,
    )
