"""Each engine option declared once (core/options.py): the CLI, the worker protocol and the engine
take the same values, and the engine refuses what its declaration refuses, in one line."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.errors import StyleError
from onnxstyle.core.options import OPTIONS, check_options
from onnxstyle.plugin import cli
from onnxstyle.plugin import protocol as P


def test_every_field_is_declared():
    assert set(OPTIONS) == {f.name for f in dataclasses.fields(StyleOptions)}


def _cli_takes(flag: str, value) -> bool:
    argv = ["stylize", "c.png", "s.png", "-o", "o.png", flag, str(value)]
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def _wire_takes(field: str, value) -> bool:
    try:
        P.number(value, f"options.{field}")
    except P.ProtocolError:
        return False
    return True


def _engine_takes(field: str, value) -> bool:
    try:
        check_options(dataclasses.replace(StyleOptions(), **{field: value}), 1)
    except StyleError:
        return False
    return True


@pytest.mark.parametrize(
    "field, value",
    [
        ("steps", 200_000),  # ran locally, refused with --worker
        ("steps", 100_000),
        ("min_size", 3_000_000_000),  # likewise
        ("min_size", 2**31 - 1),
        ("max_size", 2**31),
        ("scales", 2**31),
        ("tile_overlap", 2**31),
        ("seed", 2**63),
        ("seed", 2**63 - 1),
        ("style_scale", 0.0),
        ("learning_rate", 0.0),
        ("tile_budget_mpx", 0.0),
        ("strength", 1e39),
        ("content_weight", 3.4e38),
    ],
)
def test_a_value_is_taken_by_every_front_end_or_by_none(capsys, field, value):
    """One range per option, the same for `onnxstyle stylize`, its --worker and the engine."""
    flag = OPTIONS[field].flags[0]
    taken = (_cli_takes(flag, value), _wire_takes(field, value), _engine_takes(field, value))
    assert taken in ((True, True, True), (False, False, False)), taken


@pytest.mark.parametrize(
    "bad",
    [
        dict(style_layer_weights=(math.nan, 1.0, 1.0, 1.0, 1.0)),
        dict(style_layer_weights=(-1.0, 1.0, 1.0, 1.0, 1.0)),
        dict(style_layer_weights=(0.0, 0.0, 0.0, 0.0, 0.0)),
        dict(steps="3"),
        dict(max_size=512.0),
        dict(seed=True),
        dict(pooling="median"),
        dict(device="tpu"),
        dict(style_blend=(1.0, math.inf)),
    ],
    ids=repr,
)
def test_the_engine_refuses_what_the_declaration_refuses_in_one_line(bad):
    """Before any model is loaded: NaN or negative layer weights used to reach the graph, and
    steps="3" was a TypeError."""
    image = np.full((32, 32, 3), 0.5, np.float32)
    with pytest.raises(StyleError) as caught:
        stylize(image, [image, image], StyleOptions(**bad))
    assert "\n" not in str(caught.value) and not isinstance(caught.value, TypeError)
