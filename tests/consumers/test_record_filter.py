"""RecordFilter and its helpers: levels, logger prefixes, the message pattern; no Redis."""

from __future__ import annotations

import re
from typing import Any

import pytest

from consumers.record_filter import RecordFilter, message_text, parse_level, record_level


def record(name: str = "app.web", levelno: int | None = 30, msg: Any = "hello", **more: Any) -> dict[str, Any]:
    """A record's attributes as the catcher stores them (only what the filter reads, plus ``more``)."""
    attributes: dict[str, Any] = {"name": name, "msg": msg, "args": None, **more}
    if levelno is not None:
        attributes["levelno"] = levelno
    return attributes


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("debug", 10),
        ("INFO", 20),
        ("Warning", 30),
        ("warn", 30),
        ("error", 40),
        ("critical", 50),
        ("fatal", 50),
        ("25", 25),
        (" 0 ", 0),
    ],
)
def test_parse_level_takes_names_in_any_case_and_numbers(text: str, level: int) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize("text", ["loud", "", "-5", "3.5", "warnings"])
def test_parse_level_refuses_anything_else_naming_what_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match=r"unknown level .*\(debug, info, warning, error, critical, or a number\)"):
        parse_level(text)


def test_the_level_condition_is_this_level_and_above() -> None:
    warning_and_up = RecordFilter.build(level=parse_level("warning"))
    assert [warning_and_up.matches(record(levelno=n)) for n in (10, 20, 29, 30, 31, 40, 50)] == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
    ]


def test_a_record_without_levelno_is_judged_by_its_levelname_and_without_either_never_matches_a_level() -> None:
    error_and_up = RecordFilter.build(level=40)
    assert error_and_up.matches(record(levelno=None, levelname="CRITICAL"))
    assert not error_and_up.matches(record(levelno=None, levelname="INFO"))
    assert not error_and_up.matches(record(levelno=None))
    assert not error_and_up.matches(record(levelno=None, levelname="Level 45"))  # not a name logging knows
    assert not error_and_up.matches({"name": "x", "levelno": True})  # a bool is not a level number
    assert RecordFilter().matches(record(levelno=None))  # no level condition: every record


def test_record_level_prefers_levelno() -> None:
    assert record_level({"levelno": 35, "levelname": "ERROR"}) == 35
    assert record_level({"levelname": "warning"}) == 30
    assert record_level({"levelno": "40"}) is None


def test_a_logger_prefix_matches_the_logger_and_its_children_only() -> None:
    app_db = RecordFilter.build(loggers=["app.db"])
    assert app_db.matches(record(name="app.db"))
    assert app_db.matches(record(name="app.db.pool"))
    assert app_db.matches(record(name="app.db.pool.conn"))
    assert not app_db.matches(record(name="app.dbx"))
    assert not app_db.matches(record(name="app.db_replica"))
    assert not app_db.matches(record(name="app"))
    assert not app_db.matches(record(name="other.app.db"))
    assert not app_db.matches({"levelno": 30, "msg": "no name"})
    assert not app_db.matches(record(name=None))


def test_logger_prefixes_are_alternatives_and_a_trailing_dot_is_the_same_prefix() -> None:
    either = RecordFilter.build(loggers=["app.db.", "worker"])
    assert either.loggers == ("app.db", "worker")
    assert either.matches(record(name="app.db.pool"))
    assert either.matches(record(name="worker.jobs"))
    assert not either.matches(record(name="app.web"))
    assert not either.matches(record(name="workers"))
    # The root of everything ("" or "."): no condition at all.
    assert RecordFilter.build(loggers=["."]).matches_everything


def test_grep_searches_the_message_with_python_re() -> None:
    timeouts = RecordFilter.build(grep=r"time(d )?out after \d+ ?s")
    assert isinstance(timeouts.pattern, re.Pattern)  # compiled once, at build
    assert timeouts.matches(record(msg="request timed out after 30 s"))
    assert timeouts.matches(record(msg="timeout after 5s, retrying"))
    assert not timeouts.matches(record(msg="request took 30 s"))
    assert not timeouts.matches(record(msg="x", exc_text="timeout after 5s"))  # the message only
    assert RecordFilter.build(grep="(?i)^ERROR").matches(record(msg="error: disk full"))


def test_grep_sees_the_message_as_get_message_would() -> None:
    # A stock SocketHandler sends msg merged with its args; another client may send args.
    assert message_text(record(msg="user 42 logged in")) == "user 42 logged in"
    assert message_text(record(msg="user %s logged %s", args=[42, "in"])) == "user 42 logged in"
    assert message_text(record(msg="%(user)s left", args={"user": "ann"})) == "ann left"
    assert message_text(record(msg="100% %s", args=[1])) == "100% %s"  # broken % format: as sent
    assert message_text(record(msg={"event": "login"})) == "{'event': 'login'}"
    assert message_text({"message": "only a message"}) == "only a message"
    assert message_text({}) == ""
    assert RecordFilter.build(grep="user 42").matches(record(msg="user %d", args=[42]))


def test_an_invalid_pattern_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"invalid regular expression '\(unclosed'"):
        RecordFilter.build(grep="(unclosed")


def test_conditions_combine_with_and() -> None:
    wanted = RecordFilter.build(level=40, loggers=["app.db"], grep="deadlock")
    assert wanted.matches(record(name="app.db.pool", levelno=40, msg="deadlock detected"))
    assert not wanted.matches(record(name="app.db.pool", levelno=30, msg="deadlock detected"))
    assert not wanted.matches(record(name="app.web", levelno=40, msg="deadlock detected"))
    assert not wanted.matches(record(name="app.db.pool", levelno=40, msg="slow query"))
    assert RecordFilter.build().matches_everything
    assert not wanted.matches_everything


def test_grep_does_not_let_a_sender_expand_the_message_into_gigabytes() -> None:
    # Each of these would make a string of gigabytes (seconds of CPU, an out-of-memory kill) per record.
    hostile = [
        record(msg="%2147483647d", args=[1]),
        record(msg="%.2147483647f", args=[1.0]),
        record(msg="%*d", args=[2147483647, 1]),
        record(msg="%(a)s" * 100_000, args={"a": "x" * 100_000}),
    ]
    for each in hostile:
        assert message_text(each) == each["msg"]  # as sent
    assert message_text(record(msg="%5d|%-3s|%.2f", args=[42, "a", 1.5])) == "   42|a  |1.50"
    assert message_text(record(msg="%(a)s and %(a)s", args={"a": "b"})) == "b and b"
