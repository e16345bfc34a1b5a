"""``Result.values`` (issue 11, item 1): parsed JSON values and validated Pydantic objects."""

import json

import numpy as np
import pytest
from pydantic import BaseModel, Field

import potentia as pt
from potentia.api import value_parser
from potentia.models import ToyLM, random_ngram
from potentia.potentials.base import Vocabulary

VOCAB = Vocabulary([b'{"a":', b"1", b"2", b"}", b" "])
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


class M(BaseModel):
    a: int = Field(le=15)


def _model():
    return ToyLM(random_ngram(np.random.default_rng(0), VOCAB, order=2, smoothing=0.3))


@pytest.mark.parametrize("method", ["smc", "cars", "asap"])
def test_pydantic_model_gives_validated_instances(method):
    out = pt.sample(_model(), None, pt.json(M), particles=8, max_tokens=6, method=method)
    vals = out.values
    assert len(vals) == len(out.texts) == len(out.weights)
    fin = [s == "finished" for s in out.status]
    assert any(fin)
    for v, text, f in zip(vals, out.texts, fin):
        if f:
            assert isinstance(v, M) and v == M.model_validate_json(text)
        else:
            assert v is None


def test_json_schema_gives_python_values_and_survives_to_json():
    out = pt.sample(_model(), None, pt.json(SCHEMA), particles=8, max_tokens=6)
    want = [json.loads(t) if s == "finished" else None for t, s in zip(out.texts, out.status)]
    assert out.values == want and any(v is not None for v in want)
    back = pt.Result.from_json(out.to_json())
    assert back.values == want  # json.loads comes back by itself
    m = pt.sample(_model(), None, pt.json(M), particles=4, max_tokens=6)
    again = pt.Result.from_json(m.to_json(), parser=M.model_validate_json)
    assert again.values == m.values
    assert pt.Result.from_json(m.to_json()).values == [
        None if v is None else v.model_dump() for v in m.values
    ]  # without the model: plain JSON values


def test_failing_texts_give_none_with_the_reason():
    r = pt.Result(
        contexts=[[], [], []],
        texts=['{"a": 99}', '{"a": 1}', "{"],
        log_weights=np.zeros(3),
        log_z=0.0,
        status=["finished", "finished", "dead: x"],
        parser=M.model_validate_json,
    )
    assert r.values == [None, M(a=1), None]
    errs = r.value_errors
    assert "ValidationError" in errs[0] and errs[1] is None and "not finished" in errs[2]


def test_no_parser_is_a_clear_error():
    out = pt.sample(_model(), None, None, particles=2, max_tokens=3)
    with pytest.raises(ValueError, match="parser"):
        _ = out.values
    assert value_parser(pt.regex("a")) is None
    assert value_parser(pt.json(SCHEMA) & pt.regex(".*")) is json.loads
    with pytest.raises(TypeError, match="parser"):
        pt.Result.from_json(out.to_json(), parser=3)
