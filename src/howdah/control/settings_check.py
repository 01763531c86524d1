"""Whether Postgres would accept a setting's value, decided from its own setting metadata (pure, no I/O).

Postgres describes each setting (``postgres --describe-config``, ``pg_settings``): its type, its base unit, its
range and an enum's values. :func:`check_settings` reads values the way Postgres's ``parse_and_validate_value``
does, so a value Postgres would refuse is refused before anything is sent to a data plane:

- ``bool``: ``on``/``off``, ``true``/``false``, ``yes``/``no``, ``1``/``0``, any case, and unique prefixes
  (``t``, ``fa``, ``of``; not ``o``);
- ``integer``: decimal, hex (``0x1F``) or octal (``017``), or a decimal fraction or exponent rounded to the
  nearest integer; settings with a unit take a plain number of base units or a number followed by a unit
  (``B kB MB GB TB``, ``us ms s min h d``; case-sensitive), converted to the base unit with a fraction rounded
  to the next smaller unit first (``1.5GB`` is exact, ``0.3kB`` of a kB setting is 0), as Postgres rounds;
  then the setting's range applies;
- ``real``: a number (with a unit for those that have one), within the range;
- ``enum``: one of its values, case-insensitively, including the spellings Postgres accepts without listing
  them (``wal_level = hot_standby``);
- ``string``: any value, except that ``search_path`` and ``temp_tablespaces`` must be lists of identifiers.

What only the running server can decide (a string setting's check hook, a time zone's name, whether a
library loads, a setting's value relative to another's) is left to the data plane, which applies settings
all or nothing and reports a refusal as a recoverable Error.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "IDENTIFIER_LIST_SETTINGS",
    "SettingInfo",
    "SettingProblem",
    "VarType",
    "check_settings",
    "check_value",
    "parse_bool",
    "parse_integer",
    "parse_real",
    "parse_settings_metadata",
    "split_identifier_list",
]

VarType = Literal["bool", "integer", "real", "string", "enum"]
_VARTYPES: Mapping[str, VarType] = {
    "BOOLEAN": "bool", "INTEGER": "integer", "REAL": "real", "STRING": "string", "ENUM": "enum",
}  # fmt: skip

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_MAX_UNIT_LEN = 3
_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale
_SCANNER_SPACE = " \t\n\r\f"  # scanner_isspace(): what separates identifiers in a list
_PRINTED_DBL_MAX = 1.79769e308  # DBL_MAX as "%g" prints it in the metadata

# Units from largest to smallest, each in its family's smallest measure (bytes, microseconds).
_MEMORY_UNITS = (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10), ("B", 1))
_TIME_UNITS = (("d", 86_400_000_000), ("h", 3_600_000_000), ("min", 60_000_000), ("s", 1_000_000), ("ms", 1_000),
               ("us", 1))  # fmt: skip
_BASE_UNITS = {"B": 1, "kB": 2**10, "8kB": 8 * 2**10, "MB": 2**20, "ms": 1_000, "s": 1_000_000, "min": 60_000_000}

#: String settings Postgres parses as comma-separated identifiers (``SplitIdentifierString``).
IDENTIFIER_LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces"})


@dataclass(frozen=True)
class SettingInfo:
    """What Postgres says about one setting: its type, base unit, range and enum values.

    ``unit`` is the base unit as ``pg_settings.unit`` shows it (``kB``, ``8kB``, ``ms`` …) or None; when
    ``units_known`` is false the unit was not available and values with a unit are not checked.
    ``enum_values`` None means an enum's values are not known (its values are then not checked).
    """

    name: str
    context: str
    vartype: VarType
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    enum_values: tuple[str, ...] | None = None
    units_known: bool = True


@dataclass(frozen=True)
class SettingProblem:
    """A value Postgres would refuse, with why and what it accepts instead."""

    name: str
    value: str
    reason: str
    accepts: str

    def __str__(self) -> str:
        return f"setting {self.name!r}: {self.value!r} {self.reason}; Postgres accepts {self.accepts}"


# ------------------------------------------------------------------------------------------------ metadata
def parse_settings_metadata(
    text: str,
    units: Mapping[str, str] | None = None,
    enum_values: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, SettingInfo]:
    """Setting name (lower case) → :class:`SettingInfo` from the output of ``postgres --describe-config``.

    Each line: name, context, group, type, default, min, max, descriptions (tab-separated). The binary prints
    no units and no enum values: they come from ``units`` and ``enum_values`` (by name; None: not known).
    Raises :class:`ValueError` on a line of another shape.
    """
    settings: dict[str, SettingInfo] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        vartype = _VARTYPES.get(fields[3].strip()) if len(fields) >= 7 else None
        name = fields[0].strip().lower()
        if vartype is None or not name:
            raise ValueError(f"line {number} of --describe-config is not 'name<TAB>context<TAB>…': {line[:80]!r}")
        low = high = None
        if vartype in ("integer", "real"):
            try:
                low, high = _bound(fields[5]), _bound(fields[6])
            except ValueError:
                raise ValueError(f"line {number} of --describe-config has no numeric range: {line[:80]!r}") from None
        unit = None if units is None else units.get(name)
        settings[name] = SettingInfo(
            name=name,
            context=fields[1].strip(),
            vartype=vartype,
            unit=unit if unit in _BASE_UNITS else None,
            min=low,
            max=high,
            enum_values=None if enum_values is None or vartype != "enum" else enum_values.get(name),
            units_known=units is not None and (unit is None or unit in _BASE_UNITS),  # a new base unit: unknown
        )
    return settings


def _bound(text: str) -> float:
    value = float(text)
    if abs(value) == _PRINTED_DBL_MAX:  # "%g" printed DBL_MAX short; the real bound is DBL_MAX itself
        return math.copysign(sys.float_info.max, value)
    return value


# ------------------------------------------------------------------------------------------------ checking
def check_settings(metadata: Mapping[str, SettingInfo], settings: Mapping[str, str]) -> list[SettingProblem]:
    """The values in ``settings`` that Postgres would refuse, in order; settings ``metadata`` does not
    describe (a library's own, an unknown name) are not checked here."""
    problems = []
    for name, value in settings.items():
        info = metadata.get(name.lower())
        if info is None:
            continue
        problem = check_value(info, value)
        if problem is not None:
            problems.append(SettingProblem(name, value, *problem))
    return problems


def check_value(info: SettingInfo, value: str) -> tuple[str, str] | None:
    """``(reason, what Postgres accepts)`` when Postgres would refuse ``value`` for ``info``, else None."""
    if info.vartype == "bool":
        if parse_bool(value) is None:
            return "is not a boolean", "on, off, true, false, yes, no, 1 or 0 (or a unique prefix of these words)"
        return None
    if info.vartype == "enum":
        if info.enum_values is None:
            return None
        folded = _ascii_lower(value)
        if not any(folded == _ascii_lower(v) for v in info.enum_values):
            return "is not one of its values", "one of: " + ", ".join(info.enum_values)
        return None
    if info.vartype in ("integer", "real"):
        return _check_number(info, value)
    if info.name in IDENTIFIER_LIST_SETTINGS and split_identifier_list(value) is None:
        return "is not a list of names", 'a comma-separated list of names, each plain or in double quotes ("My Schema")'
    return None


def _check_number(info: SettingInfo, value: str) -> tuple[str, str] | None:
    unit = info.unit
    integer = info.vartype == "integer"
    number: float | None = parse_integer(value, unit) if integer else parse_real(value, unit)
    accepts = _accepts(info, unit)
    if number is None:
        if not info.units_known:
            return None  # perhaps a quantity in a unit it takes: without its base unit that cannot be told
        kind = "an integer" if integer else "a number"
        return f"is not {kind}{' or a quantity in a unit it takes' if unit else ''}", accepts
    low = -math.inf if info.min is None else info.min
    high = math.inf if info.max is None else info.max
    if not low <= number <= high:
        shown = _quantity(number, unit) if unit else _number(number)
        return f"is {shown}, outside its range", accepts
    return None


def _accepts(info: SettingInfo, unit: str | None) -> str:
    kind = "an integer" if info.vartype == "integer" else "a number"
    low, high = info.min, info.max
    if low is None or high is None:
        span = ""
    elif unit is None:
        span = f" from {_number(low)} to {_number(high)}"
    else:
        span = f" from {_quantity(low, unit)} to {_quantity(high, unit)}"
    if unit is None:
        return kind + span
    family = _MEMORY_UNITS if _is_memory(unit) else _TIME_UNITS
    plain = "8kB pages" if unit == "8kB" else unit
    units = ", ".join(name for name, _ in reversed(family))
    return f"{kind}{span} (a plain number counts in {plain}; units: {units})"


def _number(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else f"{value:g}"


def _quantity(value: float, unit: str) -> str:
    """``value`` base units in words: the largest unit of its family that shows it exactly (``-5MB``, ``8TB``);
    -1 and 0 (which often mean "off" or "automatic") as plain numbers."""
    if value in (-1, 0):
        return _number(value)
    if not math.isfinite(value) or value != int(value):
        return f"{_number(value)}{unit}"
    if value < 0:
        return "-" + _quantity(-value, unit)
    measure = int(value) * _BASE_UNITS[unit]
    for name, size in _MEMORY_UNITS if _is_memory(unit) else _TIME_UNITS:
        if measure % size == 0:
            return f"{measure // size}{name}"
    return f"{_number(value)}{unit}"  # pragma: no cover - the smallest unit divides everything


def _is_memory(unit: str) -> bool:
    return unit in ("B", "kB", "8kB", "MB")


# -------------------------------------------------------------------------------------- parsing as Postgres
def parse_bool(value: str) -> bool | None:
    """A boolean as Postgres's ``parse_bool`` reads one (no surrounding spaces allowed), or None."""
    text = _ascii_lower(value)
    if not text:
        return None
    if "true".startswith(text) or "yes".startswith(text):
        return True
    if "false".startswith(text) or "no".startswith(text):
        return False
    if len(text) >= 2 and "on".startswith(text):  # "o" alone is ambiguous
        return True
    if len(text) >= 2 and "off".startswith(text):
        return False
    if text in ("1", "0"):
        return text == "1"
    return None


def parse_integer(value: str, unit: str | None = None) -> int | None:
    """``value`` as Postgres's ``parse_int`` reads it for a setting whose base unit is ``unit``, in that base
    unit; None when Postgres would refuse it (before its range is checked)."""
    number: float
    number, end, overflow = _strtol(value)
    if overflow or (end < len(value) and value[end] in ".eE"):
        number, end, erange = _strtod(value)
        if erange:
            return None
    if end == 0 or math.isnan(number):
        return None
    converted = _with_unit(float(number), value[end:], unit)
    if converted is None:
        return None
    rounded = _rint(converted)
    if not INT_MIN <= rounded <= INT_MAX:  # also refuses infinities
        return None
    return int(rounded)


def parse_real(value: str, unit: str | None = None) -> float | None:
    """``value`` as Postgres's ``parse_real`` reads it for a setting whose base unit is ``unit``, or None."""
    number, end, erange = _strtod(value)
    if end == 0 or erange or math.isnan(number):
        return None
    return _with_unit(number, value[end:], unit)


def _with_unit(number: float, rest: str, unit: str | None) -> float | None:
    """``number`` followed by ``rest`` (spaces, then perhaps a unit) in base units (convert_to_base_unit)."""
    rest = rest.lstrip(_C_SPACE)
    if not rest:
        return number
    if unit is None:
        return None
    given = ""
    while rest and rest[0] not in _C_SPACE and len(given) < _MAX_UNIT_LEN:
        given, rest = given + rest[0], rest[1:]
    if rest.lstrip(_C_SPACE):
        return None
    family = _MEMORY_UNITS if _is_memory(unit) else _TIME_UNITS
    base = _BASE_UNITS[unit]
    # Postgres's table lists, per base unit, the units from largest to smallest, down to those worth less
    # than one base unit; a fraction is rounded to a whole number of the next smaller unit.
    table = [(name, float(Fraction(size, base))) for name, size in family]
    for index, (name, multiplier) in enumerate(table):
        if name == given:
            converted = number * multiplier
            if index + 1 < len(table):
                smaller = table[index + 1][1]
                converted = _rint(converted / smaller) * smaller
            return converted
    return None


def _rint(value: float) -> float:
    """C's rint(): to the nearest integer, halves to even."""
    return float(round(value)) if math.isfinite(value) else value


def _strtol(text: str) -> tuple[int, int, bool]:
    """C's ``strtol(text, &end, 0)`` on a 64-bit long: (value, end index, overflowed); end 0: no number."""
    i = _skip(text, 0, _C_SPACE)
    sign = 1
    if i < len(text) and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    if text[i : i + 2] in ("0x", "0X") and i + 2 < len(text) and text[i + 2] in "0123456789abcdefABCDEF":
        digits, base, start = "0123456789abcdefABCDEF", 16, i + 2
    elif text[i : i + 1] == "0":
        digits, base, start = "01234567", 8, i
    else:
        digits, base, start = "0123456789", 10, i
    end = _skip(text, start, digits)
    if end == start:
        return 0, 0, False
    number = sign * int(text[start:end], base)
    if number > _LONG_MAX or number < _LONG_MIN:
        return (_LONG_MAX if sign > 0 else _LONG_MIN), end, True
    return number, end, False


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_HEX = re.compile(r"([+-]?)0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?\d+)?")
_SPECIAL = re.compile(r"[+-]?(infinity|inf|nan(\([0-9A-Za-z_]*\))?)", re.IGNORECASE)


def _strtod(text: str) -> tuple[float, int, bool]:
    """C's ``strtod(text, &end)``: (value, end index, ERANGE); end 0: no number."""
    start = _skip(text, 0, _C_SPACE)
    special = _SPECIAL.match(text, start)
    if special:
        word = special[0].lstrip("+-").lower()
        value = math.nan if word.startswith("nan") else math.inf
        return (-value if special[0].startswith("-") else value), special.end(), False
    hexadecimal = _HEX.match(text, start)
    if hexadecimal:
        mantissa = hexadecimal[2]
        exponent = hexadecimal[3] or "p0"
        try:
            value = float.fromhex(f"{hexadecimal[1]}0x{mantissa}{exponent}")
        except OverflowError:
            value = math.inf
        return _ranged(value, any(c not in "0." for c in mantissa), hexadecimal.end())
    decimal = _DECIMAL.match(text, start)
    if decimal is None:
        return 0.0, 0, False
    digits = decimal[1]
    return _ranged(float(decimal[0]), any(c not in "0." for c in digits), decimal.end())


def _ranged(value: float, nonzero: bool, end: int) -> tuple[float, int, bool]:
    overflow = math.isinf(value)
    underflow = nonzero and abs(value) < sys.float_info.min
    return value, end, overflow or underflow


def _skip(text: str, index: int, characters: str) -> int:
    while index < len(text) and text[index] in characters:
        index += 1
    return index


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def split_identifier_list(value: str) -> list[str] | None:
    """The names of a comma-separated identifier list as Postgres's ``SplitIdentifierString`` reads it
    (unquoted names folded to lower case, ``""`` inside quotes for a quote), or None for a syntax error."""
    names: list[str] = []
    i = _skip(value, 0, _SCANNER_SPACE)
    if i == len(value):
        return names
    while True:
        if value[i] == '"':
            name, i = "", i + 1
            while True:
                close = value.find('"', i)
                if close < 0:
                    return None
                name += value[i:close]
                if value[close + 1 : close + 2] != '"':
                    i = close + 1
                    break
                name, i = name + '"', close + 2
        else:
            start = i
            while i < len(value) and value[i] != "," and value[i] not in _SCANNER_SPACE:
                i += 1
            if i == start:
                return None
            name = _ascii_lower(value[start:i])
        names.append(name)
        i = _skip(value, i, _SCANNER_SPACE)
        if i == len(value):
            return names
        if value[i] != ",":
            return None
        i = _skip(value, i + 1, _SCANNER_SPACE)
        if i == len(value):
            return None  # a trailing comma: an empty name
