"""whole_number: the one parse of a whole number from request data (webapp/core/numbers.py)."""

import pytest

from webapp.core.numbers import MAX_ID, whole_number


@pytest.mark.parametrize("value, expected", [
    ("42", 42), (" 7 ", 7), (0, 0), (5, 5), (str(MAX_ID), MAX_ID), ("-0", 0),
])
def test_it_reads_ascii_digits_and_ints(value, expected):
    assert whole_number(value) == expected


@pytest.mark.parametrize("value", [
    "²", "٣", "1²", "", "abc", "1.0", 1.0, 1.5, True, None, [], "1e3", "+1", "-1", -1, "9" * 5000, MAX_ID + 1, str(2**64),
])
def test_it_refuses_anything_else_with_none(value):
    # "²".isdigit() and "٣".isdecimal() are True; int() refuses the first and reads the second as 3
    assert whole_number(value) is None


def test_it_keeps_to_the_bounds_given():
    assert whole_number("0", low=1) is None and whole_number("1", low=1) == 1
    assert whole_number(2**32, high=2**32 - 1) is None and whole_number("-5", low=-5) == -5
