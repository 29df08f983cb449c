"""JsonConfig: JSON round trip, unknown keys rejected, nested configs and tuples restored, stable hash."""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError


@dataclass(frozen=True)
class _Inner(JsonConfig):
    rows: int = 3
    cols: int = 3


@dataclass(frozen=True)
class _Outer(JsonConfig):
    name: str = "x"
    lr: float = 1e-3
    sizes: tuple[int, ...] = (2, 2, 6, 2)
    inner: _Inner = field(default_factory=_Inner)
    note: str | None = None


def test_round_trip_restores_nested_and_tuples(tmp_path):
    cfg = _Outer(name="y", sizes=(1, 2), inner=_Inner(rows=5), note="n")
    path = tmp_path / "c.json"
    cfg.to_json(path)
    back = _Outer.from_json(path)
    assert back == cfg
    assert isinstance(back.sizes, tuple) and isinstance(back.inner, _Inner)


def test_from_json_accepts_text_and_int_for_float():
    back = _Outer.from_json('{"lr": 1}')
    assert back.lr == 1.0 and isinstance(back.lr, float)


@pytest.mark.parametrize("data, needle", [
    ({"nmae": "z"}, "did you mean 'name'"),
    ({"inner": {"rowz": 1}}, "_Outer.inner"),
    ({"inner": 3}, "expected an object"),
])
def test_unknown_or_malformed_keys_raise(data, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("'", "'")):
        _Outer.from_dict(data)


def test_invalid_json_names_the_problem(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        _Outer.from_json(p)


def test_hash_is_stable_and_content_sensitive():
    a, b = _Outer(), _Outer()
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != _Outer(inner=_Inner(cols=4)).content_hash()
    assert len(a.content_hash()) == 16


def test_frozen():
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'name'"):
        _Outer().name = "z"  # type: ignore[misc]
