"""Whole numbers from request data (ids in a form, a query string, a JSON body), parsed in one place.

`str.isdigit()` is not the test: "²" passes it and int() refuses it, and a 5000-digit string passes
it and int() refuses that too (Python's limit on digits). Ids beyond a database bigint fail on
some backends instead of matching nothing."""

MAX_ID = 2**63 - 1  # a BigAutoField's largest value
_MAX_DIGITS = 20  # more than MAX_ID has: anything longer is out of range anyway


def whole_number(value, *, low: int = 0, high: int = MAX_ID) -> int | None:
    """`value` as an int from `low` to `high`: an int (not a bool) or a string of ASCII digits,
    with an optional minus sign and surrounding spaces; else None, for the caller to refuse
    naming its own field."""
    if isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdecimal()) or len(digits) > _MAX_DIGITS:
            return None
        value = int(text)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        return None
    return value
