"""The engine's options as command-line flags, built from core/options.py's declarations.

Each Option becomes one argparse flag (its flags, metavar, help; a `type=` that parses the text and
checks it against the option's own range, so a value refused here is refused by the engine and by
the worker alike). Defaults are None, so only the flags given override the preset; an option's
`none_word` ("none", "random") means its None.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from onnxstyle.core.engine import TILE_GB_PER_MPX
from onnxstyle.core.options import (
    BY_PRESET,
    MAX_COUNT,
    OPTIONS,
    PRESETS,
    Number,
    Option,
    StyleOptions,
)

# What the help of a flag says beyond the declaration: facts of this command's world.
EXTRA_HELP = {
    "tile_budget_mpx": f"about {TILE_GB_PER_MPX['cpu']:g} GB per Mpx on the CPU, "
    f"{TILE_GB_PER_MPX['cuda']:g} on CUDA",
}


def engine_flags() -> list[tuple[list[str], str, dict[str, Any]]]:
    """(flags, StyleOptions field, argparse keywords) for every declared option."""
    return [(list(option.flags), name, _keywords(option)) for name, option in OPTIONS.items()]


def add_preset_flag(parser: argparse.ArgumentParser) -> None:
    """--preset: the starting values the engine flags override (stylize, batch)."""
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="normal",
        help="starting values (default: normal)",
    )


def add_engine_flags(group: argparse._ArgumentGroup) -> None:
    """Every option as a flag in `group`; its help says the default (or "by preset")."""
    defaults = StyleOptions()
    for flags, name, keywords in engine_flags():
        shown = "by preset" if name in BY_PRESET else _shown(getattr(defaults, name))
        if "default" not in keywords["help"]:
            keywords = {**keywords, "help": f"{keywords['help']} (default: {shown})"}
        group.add_argument(*flags, dest=name, default=None, **keywords)


def engine_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """StyleOptions fields given on the command line (the rest come from the preset); an option's
    none_word ("none", "random") spelled out means its None."""
    overrides = {}
    for name, option in OPTIONS.items():
        value = getattr(args, name)
        if value is not None:
            overrides[name] = None if value == option.none_word else value
    return overrides


def positive_int(text: str) -> int:
    """An argparse type for counts outside the engine's options (--save-every)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, not {text}")
    return value


positive_int.__name__ = "integer"  # argparse names the type in its message


def _keywords(option: Option) -> dict[str, Any]:
    help = option.help
    if option.name in EXTRA_HELP:
        help = help.replace(" (default:", f" ({EXTRA_HELP[option.name]}; default:")
    keywords: dict[str, Any] = {"help": help}
    if option.metavar:
        keywords["metavar"] = option.metavar
    if option.number is not None:
        keywords["type"] = _number_parser(option) if option.count == 0 else _list_parser(option)
    elif option.choices and not option.free_text:
        keywords["choices"] = [option.none_word if c is None else c for c in option.choices]
    return keywords


def _number_parser(option: Option) -> Callable[[str], Any]:
    number, word = option.limits, option.none_word

    def parse(text: str) -> Any:
        if word is not None and text.lower() in (word, *(("0",) if word == "none" else ())):
            return word  # max_size 0 has always meant none
        value = int(text) if number.integer else float(text)
        if not number.accepts(value):
            also = f" or '{word}'" if word else ""
            raise argparse.ArgumentTypeError(f"must be {_range(number)}{also}, not {text}")
        return value

    parse.__name__ = "integer" if number.integer else "number"  # argparse names it in its message
    return parse


def _list_parser(option: Option) -> Callable[[str], tuple[float, ...]]:
    count, number = option.count, replace(option.limits, nullable=False)

    def parse(text: str) -> tuple[float, ...]:
        values = tuple(float(part) for part in text.split(",") if part.strip())
        if count is not None and len(values) != count:
            raise argparse.ArgumentTypeError(
                f"needs {count} comma-separated numbers, got {len(values)}"
            )
        for value in values:
            if not number.accepts(value):
                raise argparse.ArgumentTypeError(f"must be {_range(number)}, not {value:g}")
        if not values or sum(values) <= 0:
            raise argparse.ArgumentTypeError("needs numbers ≥ 0, not all 0")
        return values

    parse.__name__ = "list of numbers"
    return parse


def _range(number: Number) -> str:
    """A range as a usage error says it."""
    if not number.integer:
        above = " and > 0" if number.above_minimum else ""
        return f"a number from {number.minimum:g} to {number.maximum:g}{above}"
    if number.minimum == 0:
        return f"0 to {int(number.maximum)}"
    most = "" if number.maximum >= MAX_COUNT else f" and ≤ {int(number.maximum)}"
    return f"≥ {int(number.minimum)}{most}"


def _shown(value: Any) -> str:
    """A StyleOptions default as the command line spells it."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)
