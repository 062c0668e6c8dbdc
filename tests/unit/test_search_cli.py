"""`vitrine search` filter syntax."""

from __future__ import annotations

import pytest

from cli.search_commands import parse_condition
from shared.types import Condition, Range


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("baseColour=Blue", Condition("baseColour", "Blue")),
        ("year=2020", Condition("year", 2020)),
        ("baseColour=Blue, Red", Condition("baseColour", ("Blue", "Red"))),
        ("year=2018..2020", Condition("year", Range(gte=2018, lte=2020))),
        ("price=..99.5", Condition("price", Range(lte=99.5))),
    ],
)
def test_conditions(text, condition):
    assert parse_condition(text) == condition


@pytest.mark.parametrize(
    ("text", "words"),
    [("colour", "expected key=value"), ("=x", "expected"), ("year=a..b", "needs numbers")],
)
def test_bad_conditions_are_named(text, words):
    with pytest.raises(ValueError, match=words):
        parse_condition(text)
