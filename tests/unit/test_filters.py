"""--filter parsing, label/boolean matching and until/since timestamps, as Docker does them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pallet.engine.filters import (
    FilterError,
    get_bool,
    match_bool,
    match_label,
    match_labels,
    parse_duration,
    parse_filters,
    parse_timestamp,
)

ALLOWED = {"label", "label!", "name", "status", "dangling", "until"}


# --- parse_filters -------------------------------------------------------------------


def test_parse_filters_groups_values_by_name() -> None:
    got = parse_filters(["label=a=1", "name=web", "label=b", "label=a=1"], ALLOWED)
    assert got == {"label": ["a=1", "b"], "name": ["web"]}


def test_parse_filters_normalises_names_and_values() -> None:
    got = parse_filters([" Status = running ", "NAME=Web"], ALLOWED)
    assert got == {"status": ["running"], "name": ["Web"]}


def test_parse_filters_keeps_everything_after_first_equals() -> None:
    assert parse_filters(["label=com.example=a=b"], ALLOWED) == {"label": ["com.example=a=b"]}
    assert parse_filters(["label!=foo"], ALLOWED) == {"label!": ["foo"]}


def test_parse_filters_empty_value_and_empty_flag() -> None:
    assert parse_filters(["name=", ""], ALLOWED) == {"name": [""]}
    assert parse_filters([], ALLOWED) == {}


def test_parse_filters_bad_format() -> None:
    with pytest.raises(FilterError) as excinfo:
        parse_filters(["dangling"], ALLOWED)
    assert str(excinfo.value) == (
        'invalid argument "dangling" for "-f, --filter" flag: bad format of filter (expected name=value)'
    )


def test_parse_filters_unknown_name() -> None:
    with pytest.raises(FilterError) as excinfo:
        parse_filters(["name=x", "Colour=red"], ALLOWED)
    assert str(excinfo.value) == "invalid filter 'colour'"


def test_parse_filters_format_error_wins_over_unknown_name() -> None:
    # The CLI rejects the flag before the daemon ever validates names.
    with pytest.raises(FilterError, match="bad format"):
        parse_filters(["colour=red", "oops"], ALLOWED)


def test_filter_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        parse_filters(["x"], ALLOWED)


# --- labels ----------------------------------------------------------------------------

LABELS = {"com.example.vendor": "ACME", "empty": "", "a": "b=c"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("com.example.vendor", True),
        ("missing", False),
        ("com.example.vendor=ACME", True),
        ("com.example.vendor=acme", False),
        ("empty", True),
        ("empty=", True),
        ("com.example.vendor=", False),
        ("a=b=c", True),
        ("a=b", False),
        ("com.example.vendor!=ACME", False),
        ("com.example.vendor!=other", True),
        ("missing!=x", True),
        ("empty!=", False),
    ],
)
def test_match_label(expr: str, expected: bool) -> None:
    assert match_label(LABELS, expr) is expected


def test_match_label_no_labels() -> None:
    assert match_label({}, "a") is False
    assert match_label({}, "a!=b") is True


def test_match_labels_combines_label_and_negated_label_filters() -> None:
    assert match_labels(LABELS, {}) is True
    assert match_labels(LABELS, {"label": ["com.example.vendor", "empty"]}) is True
    assert match_labels(LABELS, {"label": ["com.example.vendor", "missing"]}) is False
    assert match_labels(LABELS, {"label!": ["missing"]}) is True
    assert match_labels(LABELS, {"label!": ["empty"]}) is False
    assert match_labels(LABELS, {"label": ["a"], "label!": ["com.example.vendor=ACME"]}) is False
    assert match_labels(LABELS, {"label": ["a"], "label!": ["com.example.vendor=X"]}) is True


# --- booleans --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_match_bool(value: str, expected: bool) -> None:
    assert match_bool(value) is expected


@pytest.mark.parametrize("value", ["True", "yes", "", "2", " true"])
def test_match_bool_rejects(value: str) -> None:
    with pytest.raises(FilterError) as excinfo:
        match_bool(value, "dangling")
    assert str(excinfo.value) == f"invalid filter 'dangling=[{value}]'"
    with pytest.raises(FilterError, match="expected true, false, 1 or 0"):
        match_bool(value)


def test_get_bool() -> None:
    assert get_bool({}, "dangling", True) is True
    assert get_bool({"dangling": ["true"]}, "dangling", False) is True
    assert get_bool({"dangling": ["0"]}, "dangling", True) is False
    assert get_bool({"dangling": ["1", "true"]}, "dangling", False) is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "invalid filter 'dangling'"),
        (["true", "false"], "invalid filter 'dangling=[true false]'"),
        (["maybe"], "invalid filter 'dangling=[maybe]'"),
    ],
)
def test_get_bool_errors(values: list[str], message: str) -> None:
    with pytest.raises(FilterError) as excinfo:
        get_bool({"dangling": values}, "dangling", False)
    assert str(excinfo.value) == message


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("-0", 0.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("1h30m10.5s", 5410.5),
        ("300ms", 0.3),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("-1m", -60.0),
        ("+2s", 2.0),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),
        ("1\u03bcs", 1e-6),
        ("1500ns", 1.5e-6),
        ("2h45m", 9900.0),
    ],
)
def test_parse_duration(value: str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("5", 'time: missing unit in duration "5"'),
        ("1h5", 'time: missing unit in duration "1h5"'),
        (".s", 'time: invalid duration ".s"'),
        ("h", 'time: invalid duration "h"'),
        ("-", 'time: invalid duration "-"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
        ("1 h", 'time: unknown unit " h" in duration "1 h"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
    ],
)
def test_parse_duration_errors(value: str, message: str) -> None:
    with pytest.raises(FilterError) as excinfo:
        parse_duration(value)
    assert str(excinfo.value) == message


# --- timestamps -------------------------------------------------------------------------------


@pytest.fixture
def tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in UTC, restoring the process time zone afterwards."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


NOW = 1_700_000_000.75  # 2023-11-14T22:13:20.75Z
DAY_2006 = 1_136_160_000  # 2006-01-02T00:00:00Z
T_2006 = 1_136_214_245  # 2006-01-02T15:04:05Z


@pytest.mark.usefixtures("tz")
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Durations count back from now, truncated to whole seconds.
        ("10m", 1_699_999_400.0),
        ("1h30m", 1_699_994_600.0),
        ("1.5s", 1_699_999_999.0),
        ("-5s", 1_700_000_005.0),
        # Unix timestamps.
        ("0", 0.0),
        ("1136073600", 1_136_073_600.0),
        ("1136073600.5", 1_136_073_600.5),
        ("1136073600.000000001", 1_136_073_600.000000001),
        ("+5", 5.0),
        # Dates and RFC 3339 variants.
        ("2006-01-02", float(DAY_2006)),
        ("2006-01-02Z", float(DAY_2006)),
        ("2006-01-02+01:00", float(DAY_2006 - 3600)),
        ("2006-01-02-01:30", float(DAY_2006 + 5400)),
        ("2006-01-02T15", float(DAY_2006 + 15 * 3600)),
        ("2006-01-02T15:04", float(T_2006 - 5)),
        ("2006-01-02T15:04Z", float(T_2006 - 5)),
        ("2006-01-02T15Z", float(DAY_2006 + 15 * 3600)),
        ("2006-01-02T15:04:05", float(T_2006)),
        ("2006-01-02T15:04:05Z", float(T_2006)),
        ("2006-01-02T15:04:05+07:00", float(T_2006 - 7 * 3600)),
        ("2006-01-02T15:04:05-07:00", float(T_2006 + 7 * 3600)),
        ("2006-01-02T15:04:05.5", T_2006 + 0.5),
        ("2006-01-02T15:04:05.25Z", T_2006 + 0.25),
        ("2006-01-02T15:04:05,25Z", T_2006 + 0.25),
        ("2006-01-02T15:04:05.123456789Z", T_2006 + 0.123456789),
        ("2006-01-02T15:04:05.1234567899Z", T_2006 + 0.123456789),
        ("2006-01-02T15:04:05.5+01:00", T_2006 - 3600 + 0.5),
        ("2006-01-02T5", float(DAY_2006 + 5 * 3600)),  # Go's hour takes one or two digits
        ("1970-01-01", 0.0),
        ("1969-12-31T23:59:59Z", -1.0),
        ("2000-02-29", 951_782_400.0),
    ],
)
def test_parse_timestamp(value: str, expected: float) -> None:
    assert parse_timestamp(value, NOW) == pytest.approx(expected, abs=1e-9)


def test_parse_timestamp_uses_local_zone_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    try:
        assert parse_timestamp("2006-01-02", NOW) == DAY_2006 - 9 * 3600
        assert parse_timestamp("2006-01-02T15:04:05", NOW) == T_2006 - 9 * 3600
        assert parse_timestamp("2006-01-02T15:04:05Z", NOW) == T_2006  # explicit zone wins
        # Go uses the fixed offset in effect at the reference time, not at the parsed date.
        monkeypatch.setenv("TZ", "EST+5EDT,M3.2.0,M11.1.0")
        time.tzset()
        july = 1_688_212_800.0  # 2023-07-01T12:00:00Z, daylight time (UTC-4)
        assert parse_timestamp("2006-01-02", july) == DAY_2006 + 4 * 3600
        assert parse_timestamp("2006-01-02", NOW) == DAY_2006 + 5 * 3600
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("tz")
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", 'failed to parse value as time or duration: "abc"'),
        ("", 'failed to parse value as time or duration: ""'),
        ("1.x", 'failed to parse value as time or duration: "1.x"'),
        ("12.", 'failed to parse value as time or duration: "12."'),
        ("2006-13-01", 'parsing time "2006-13-01": month out of range'),
        ("2006-00-01", 'parsing time "2006-00-01": month out of range'),
        ("2006-02-30", 'parsing time "2006-02-30": day out of range'),
        ("2005-02-29", 'parsing time "2005-02-29": day out of range'),
        ("2006-01-00", 'parsing time "2006-01-00": day out of range'),
        ("2006-01-02T24:00:00", 'parsing time "2006-01-02T24:00:00": hour out of range'),
        ("2006-01-02T10:60:00", 'parsing time "2006-01-02T10:60:00": minute out of range'),
        ("2006-01-02T10:00:60", 'parsing time "2006-01-02T10:00:60": second out of range'),
        (
            "2006-01-02T10:00:00+25:00",
            'parsing time "2006-01-02T10:00:00+25:00": time zone offset hour out of range',
        ),
        ("2006-01-02X", 'parsing time "2006-01-02X": extra text: "X"'),
        ("2006-01-02T15:04:05Zjunk", 'parsing time "2006-01-02T15:04:05Zjunk": extra text: "junk"'),
        ("06-01-02", 'parsing time "06-01-02" as "2006-01-02": cannot parse "06-01-02" as "2006"'),
        ("2006-1-02", 'parsing time "2006-1-02" as "2006-01-02": cannot parse "1-02" as "01"'),
        ("2006/01/02-", 'parsing time "2006/01/02-" as "2006-01-02": cannot parse "/01/02-" as "-"'),
        # The offset's assumed colon makes GetTimestamp pick the hh:mm layout here.
        (
            "2006-01-02T15:04:05+0700",
            'parsing time "2006-01-02T15:04:05+0700" as "2006-01-02T15:04Z07:00": '
            'cannot parse ":05+0700" as "Z07:00"',
        ),
    ],
)
def test_parse_timestamp_errors(value: str, message: str) -> None:
    with pytest.raises(FilterError) as excinfo:
        parse_timestamp(value, NOW)
    assert str(excinfo.value) == message
