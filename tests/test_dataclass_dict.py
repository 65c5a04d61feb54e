"""The one dataclass <-> plain dict converter: round trips, type conversion, named errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from structvpr.dataclass_dict import ConfigError, from_plain_dict, to_plain_dict


@dataclass
class Inner:
    size: tuple[int, int] = (2, 3)
    folder: str = "a"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    scale: float = 1.0
    devices: int | str | list[int] = 1
    limit: int | None = None
    tags: list[str] = field(default_factory=list)
    count: int = 0


def test_round_trip_through_json_gives_back_the_same_dataclass() -> None:
    value = Outer(Inner((4, 5), "b"), 0.5, "auto", 7, ["x"])
    plain = to_plain_dict(value)
    assert plain == {
        "inner": {"size": [4, 5], "folder": "b"},
        "scale": 0.5,
        "devices": "auto",
        "limit": 7,
        "tags": ["x"],
        "count": 0,
    }
    assert from_plain_dict(Outer, json.loads(json.dumps(plain))) == value


def test_values_are_converted_to_the_field_types_and_missing_keys_take_defaults() -> None:
    value = from_plain_dict(Outer, {"scale": "1e-4", "devices": [0, 1], "inner": {"size": [8, 9]}})
    assert value.scale == pytest.approx(1e-4) and isinstance(value.scale, float)
    assert from_plain_dict(Outer, {"count": "3"}).count == 3
    assert value.devices == [0, 1] and value.inner == Inner((8, 9), "a") and value.limit is None
    assert to_plain_dict(Inner(folder=Path("x")))["folder"] == "x"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"inner": {"colour": 1}}, "unknown config key 'inner.colour' (known: folder, size)"),
        ({"inner": {"size": [1, 2, 3]}}, "inner.size: expected 2 values"),
        ({"scale": "fast"}, "scale: expected a number"),
        ({"count": 1.5}, "count: expected an integer"),
        ({"count": True}, "count: expected an integer"),
        ({"limit": 1.5}, "limit: 1.5 is not a int | None"),
        ({"inner": 3}, "inner: expected a mapping"),
    ],
)
def test_bad_values_name_the_dotted_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        from_plain_dict(Outer, values)
