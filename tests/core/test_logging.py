"""No email address or phone number reaches a log in plaintext, whichever logger writes it and
however it travels (message, %-arguments, exception, stack). The records go through the real
handlers configured by settings.LOGGING; their streams are swapped for a buffer (caplog would
capture records before the handlers' filters run)."""

from __future__ import annotations

import io
import logging
import runpy
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery.app.log import Logging
from django.conf import settings
from django.utils.module_loading import import_string
from gunicorn.config import Config

from cdp.celery import app as celery_app
from cdp.core.gunicorn_logging import RedactingLogger
from cdp.core.ids import uuid7
from cdp.core.logging import EMAIL_MASK, PARAM_MASK, PHONE_MASK, PiiRedactingFilter, redact
from profiles.enums import IdentifierType

EMAIL = "sentinel.person@example.com"
PHONE_UK = "+44 20 7946 0958"
PHONE_US = "+1 (650) 555-1212"
SENTINELS = (EMAIL, PHONE_UK, PHONE_US, "sentinel", "7946", "555-1212")

LOGGERS = [
    "",
    "django",
    "django.request",
    "django.server",
    "celery",
    "celery.worker.strategy",
    "governance.tasks",
    "profiles.services",
]


def _all_loggers() -> list[logging.Logger]:
    named = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return [logging.getLogger(), *named]


def _is_pytest_handler(handler: logging.Handler) -> bool:
    return type(handler).__module__.startswith("_pytest")


def _live_handlers() -> list[tuple[str, logging.Handler]]:
    """Every handler attached to any logger, but pytest's own and NullHandlers."""
    return [
        (logger.name, handler)
        for logger in _all_loggers()
        for handler in logger.handlers
        if not _is_pytest_handler(handler) and not isinstance(handler, logging.NullHandler)
    ]


@contextmanager
def _captured_output() -> Iterator[io.StringIO]:
    """Point every stream handler of every logger at one buffer, for the duration."""
    buffer = io.StringIO()
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for _name, handler in _live_handlers():
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            swapped.append((handler, handler.setStream(buffer)))
    try:
        yield buffer
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)


def _assert_no_plaintext(text: str) -> None:
    for sentinel in SENTINELS:
        assert sentinel not in text


def _line(logger: logging.Logger, level: str, message: str) -> str:
    """How the `plain` formatter ends a line (after its timestamp)."""
    return f" {level} {logger.name} {message}"


@pytest.mark.parametrize("name", LOGGERS)
def test_pii_in_the_message_is_redacted(name: str) -> None:
    # given
    logger = logging.getLogger(name)

    # when
    with _captured_output() as out:
        logger.warning(f"no profile for {EMAIL}, tried {PHONE_UK} and {PHONE_US}")

    # then
    text = out.getvalue()
    _assert_no_plaintext(text)
    expected = f"no profile for {EMAIL_MASK}, tried {PHONE_MASK} and {PHONE_MASK}"
    assert text.splitlines()[-1].endswith(_line(logger, "WARNING", expected))
    assert text.count("\n") == 1


@pytest.mark.parametrize("name", LOGGERS)
def test_pii_in_percent_args_is_redacted(name: str) -> None:
    # given
    logger = logging.getLogger(name)

    # when
    with _captured_output() as out:
        logger.warning("no profile for %s, tried %s and %r", EMAIL, PHONE_UK, PHONE_US)
        logger.warning("identify %(email)s", {"email": EMAIL})

    # then
    text = out.getvalue()
    _assert_no_plaintext(text)
    first, second = text.splitlines()
    assert first.endswith(
        _line(
            logger, "WARNING", f"no profile for {EMAIL_MASK}, tried {PHONE_MASK} and '{PHONE_MASK}'"
        )
    )
    assert second.endswith(_line(logger, "WARNING", f"identify {EMAIL_MASK}"))


@pytest.mark.parametrize("name", LOGGERS)
def test_pii_in_an_exception_traceback_is_redacted(name: str) -> None:
    # given
    logger = logging.getLogger(name)

    # when
    with _captured_output() as out:
        try:
            try:
                raise LookupError(f"no identity {PHONE_US}")
            except LookupError as inner:
                raise ValueError(f"cannot merge {EMAIL} into {PHONE_UK}") from inner
        except ValueError:
            logger.exception("merge failed for %s", EMAIL)

    # then
    text = out.getvalue()
    _assert_no_plaintext(text)
    lines = text.splitlines()
    assert lines[0].endswith(_line(logger, "ERROR", f"merge failed for {EMAIL_MASK}"))
    assert f"LookupError: no identity {PHONE_MASK}" in lines
    assert f"ValueError: cannot merge {EMAIL_MASK} into {PHONE_MASK}" in lines
    assert lines[-1] == f"ValueError: cannot merge {EMAIL_MASK} into {PHONE_MASK}"


def test_pii_in_a_stack_is_redacted() -> None:
    # given
    logger = logging.getLogger("profiles.services")
    email = EMAIL

    def lookup(value: str) -> None:
        logger.warning("lookup", stack_info=True)

    # when
    with _captured_output() as out:
        lookup(email)

    # then
    text = out.getvalue()
    _assert_no_plaintext(text)
    assert "Stack (most recent call last):" in text


def test_django_loggers_are_redacted_when_debug_is_on(settings: Any) -> None:
    # given: with DEBUG on, Django's default console handler would write django.* records
    settings.DEBUG = True
    loggers = [logging.getLogger(name) for name in ("django", "django.request", "django.server")]

    # when
    with _captured_output() as out:
        for logger in loggers:
            logger.warning("Not Found: /unsubscribe?email=%s", EMAIL)

    # then
    text = out.getvalue()
    _assert_no_plaintext(text)
    assert len(text.splitlines()) == 3


def test_every_handler_in_settings_has_the_redaction_filter() -> None:
    # given
    handlers = settings.LOGGING["handlers"]

    # when
    without = sorted(name for name, conf in handlers.items() if "redact_pii" not in conf["filters"])  # type: ignore[attr-defined]

    # then
    assert sorted(handlers) == ["console"]  # type: ignore[call-overload]
    assert without == []
    assert settings.LOGGING["filters"]["redact_pii"] == {  # type: ignore[index]
        "()": "cdp.core.logging.PiiRedactingFilter"
    }
    assert settings.LOGGING["root"]["handlers"] == ["console"]  # type: ignore[index]


def _unfiltered_handlers() -> list[str]:
    return sorted(
        f"{name or 'root'}: {type(handler).__name__}"
        for name, handler in _live_handlers()
        if not any(isinstance(f, PiiRedactingFilter) for f in handler.filters)
    )


def test_every_live_handler_has_the_redaction_filter() -> None:
    # when
    unfiltered = _unfiltered_handlers()

    # then
    assert unfiltered == []
    assert [
        type(h).__name__ for h in logging.getLogger().handlers if not _is_pytest_handler(h)
    ] == ["StreamHandler"]


@contextmanager
def _logging_config_restored() -> Iterator[None]:
    loggers = _all_loggers()
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    was_setup = Logging._setup  # type: ignore[attr-defined]
    try:
        yield
    finally:
        Logging._setup = was_setup  # type: ignore[attr-defined]
        for logger, handlers, level, propagate, disabled in saved:
            logger.handlers = handlers
            logger.level = level
            logger.propagate = propagate
            logger.disabled = disabled


def test_a_celery_worker_keeps_the_redacting_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: what `celery worker` does at start-up; Celery's own handlers would not redact
    for name in ("_MP_FORK_LOGLEVEL_", "_MP_FORK_LOGFILE_", "_MP_FORK_LOGFORMAT_"):
        monkeypatch.delenv(name, raising=False)
    with _logging_config_restored():
        Logging._setup = False  # type: ignore[attr-defined]
        celery_app.log.setup_logging_subsystem(loglevel="INFO")

        # when
        with _captured_output() as out:
            logging.getLogger("celery.worker.strategy").warning("task for %s", EMAIL)
            logging.getLogger("governance.tasks").warning("call %s", PHONE_UK)

        # then
        text = out.getvalue()
        unfiltered = _unfiltered_handlers()
    _assert_no_plaintext(text)
    assert text.splitlines()[0].endswith(f"celery.worker.strategy task for {EMAIL_MASK}")
    assert text.splitlines()[1].endswith(f"governance.tasks call {PHONE_MASK}")
    assert unfiltered == []


def test_iso_dates_times_and_uuids_are_left_alone() -> None:
    # given
    logger = logging.getLogger("governance.tasks")
    ids = [str(uuid7()), str(uuid.uuid4()), "12345678-1234-4234-8234-123456789012"]
    message = (
        f"profiles {ids[0]} {ids[1]} {ids[2]} exported at 2026-11-28T14:36:42.123456+00:00, "
        "batch 7 2026-11-28 14:36:42, window 2026-11-01..2026-11-28, took 14:36:42,5"
    )

    # when
    with _captured_output() as out:
        logger.info(message)

    # then
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().endswith(f" INFO governance.tasks {message}\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (EMAIL, EMAIL_MASK),
        (f"<{EMAIL}>", f"<{EMAIL_MASK}>"),
        (PHONE_UK, PHONE_MASK),
        (PHONE_US, PHONE_MASK),
        ("+16505551212", PHONE_MASK),
        ("call 020 7946 0958.", f"call {PHONE_MASK}."),
        ("phone=07946 095 800", f"phone={PHONE_MASK}"),
        (f"{PHONE_UK} on 2026-11-28", f"{PHONE_MASK} on 2026-11-28"),
        ("2026-11-28", "2026-11-28"),
        ("2026-11-28T14:36:42Z", "2026-11-28T14:36:42Z"),
        ("2026-11-28 14:36:42,123", "2026-11-28 14:36:42,123"),
        ("entry 42 2026-11-28", "entry 42 2026-11-28"),
        (
            "12345678-1234-4234-8234-123456789012",
            "12345678-1234-4234-8234-123456789012",
        ),
        (
            "0190f4a2-7c3e-7abc-8def-0123456789ab",
            "0190f4a2-7c3e-7abc-8def-0123456789ab",
        ),
        ("audit chain verified: 1024 entries", "audit chain verified: 1024 entries"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    # when
    result = redact(text)

    # then
    assert result == expected


# --- request lines: query strings -----------------------------------------------------------

EMAIL_QUOTED = "sentinel.person%40example.com"
PHONE_QUOTED = "%2B16505551212"
USER_ID = "cust-sentinel-4417"
ANONYMOUS_ID = "anon-sentinel-9021"
QUERY_SENTINELS = (*SENTINELS, EMAIL_QUOTED, PHONE_QUOTED, USER_ID, ANONYMOUS_ID, "6505551212")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"GET /api/v1/profiles/?email={EMAIL_QUOTED} HTTP/1.1",
         f"GET /api/v1/profiles/?email={PARAM_MASK} HTTP/1.1"),
        (f"GET /api/v1/profiles/?phone={PHONE_QUOTED} HTTP/1.1",
         f"GET /api/v1/profiles/?phone={PARAM_MASK} HTTP/1.1"),
        (f"GET /api/v1/profiles/?user_id={USER_ID} HTTP/1.1",
         f"GET /api/v1/profiles/?user_id={PARAM_MASK} HTTP/1.1"),
        # a workspace's own identifier type, with the paging parameters left as they are
        (f"/api/v1/profiles/?loyalty_number={USER_ID}&cursor=cD0y&page_size=50",
         f"/api/v1/profiles/?loyalty_number={PARAM_MASK}&cursor=cD0y&page_size=50"),
        (f"/v1/personalize?userId={USER_ID}&jurisdiction=EU",
         f"/v1/personalize?userId={PARAM_MASK}&jurisdiction=EU"),
        (f"/v1/consent?userId={USER_ID}&anonymousId={ANONYMOUS_ID}&writeKey=wk_live_1",
         f"/v1/consent?userId={PARAM_MASK}&anonymousId={PARAM_MASK}&writeKey={PARAM_MASK}"),
        (f"/exports/?crm_id={USER_ID}&customerID={USER_ID}",
         f"/exports/?crm_id={PARAM_MASK}&customerID={PARAM_MASK}"),
        ("/governance/requests/0190f4a2-7c3e-7abc-8def-0123456789ab/download/?token=Zm9vYmFy",
         f"/governance/requests/0190f4a2-7c3e-7abc-8def-0123456789ab/download/?token={PARAM_MASK}"),
        # any other parameter is read decoded: an email or a phone in it is redacted...
        (f"/admin/profiles/profile/?q={EMAIL_QUOTED}&o=-1",
         f"/admin/profiles/profile/?q={EMAIL_MASK}&o=-1"),
        ("/admin/?q=%2B44+20+7946+0958", f"/admin/?q={PHONE_MASK}"),
        (f"/login/?next=/v1/consent%3FuserId%3D{USER_ID}",
         f"/login/?next=/v1/consent?userId={PARAM_MASK}"),
        # ...and left as it was when there is none
        ("/admin/collect/importjob/?status__exact=failed&paid=1&valid=yes&next=%2Fadmin%2F",
         "/admin/collect/importjob/?status__exact=failed&paid=1&valid=yes&next=%2Fadmin%2F"),
        ("/health/?format=json", "/health/?format=json"),
        ("Is it up? status=ok", "Is it up? status=ok"),
        # percent-encoded outside a query string too
        (f"/unsubscribe/{EMAIL_QUOTED}/", f"/unsubscribe/{EMAIL_MASK}/"),
        ("sentinel.person%2540example.com", EMAIL_MASK),
        (f"called {PHONE_QUOTED}", f"called {PHONE_MASK}"),
    ],
)  # fmt: skip
def test_redact_request_lines(text: str, expected: str) -> None:
    # when
    result = redact(text)

    # then
    assert result == expected


@pytest.mark.parametrize("kind", IdentifierType.values)
def test_every_built_in_identifier_type_is_masked_as_a_query_parameter(kind: str) -> None:
    """The consent and personalization APIs spell them in camelCase, the profile lookup in
    snake_case; a new identifier type must be masked in both without a second thought."""
    # given
    first, *rest = kind.split("_")
    camel = first + "".join(word.title() for word in rest)

    # when
    result = redact(f"/v1/x?{kind}=sentinel&{camel}=sentinel")

    # then
    assert result == f"/v1/x?{kind}={PARAM_MASK}&{camel}={PARAM_MASK}"


def test_a_deeply_nested_query_string_is_redacted_without_recursing_without_end() -> None:
    # given: a URL whose value holds itself, 5,000 times over
    text = "/a?next=" + "x%25?next=" * 5000 + EMAIL_QUOTED

    # when
    result = redact(text)

    # then
    assert result.endswith(EMAIL_MASK)
    assert EMAIL_QUOTED not in result


def test_runserver_request_lines_are_redacted() -> None:
    # given: how runserver (django.core.servers.basehttp) logs a request
    logger = logging.getLogger("django.server")
    line = f"GET /api/v1/profiles/?email={EMAIL_QUOTED} HTTP/1.1"

    # when
    with _captured_output() as out:
        logger.info('"%s" %s %s', line, "200", "84")
        logger.warning('"%s" %s %s', f"GET /v1/consent?anonymousId={ANONYMOUS_ID} HTTP/1.1", 400, 9)

    # then
    text = out.getvalue()
    for sentinel in QUERY_SENTINELS:
        assert sentinel not in text
    first, second = text.splitlines()
    assert first.endswith(
        f' django.server "GET /api/v1/profiles/?email={PARAM_MASK} HTTP/1.1" 200 84'
    )
    assert second.endswith(f'"GET /v1/consent?anonymousId={PARAM_MASK} HTTP/1.1" 400 9')


@pytest.fixture
def gunicorn_loggers() -> Iterator[None]:
    """Gunicorn's loggers are module-global: put them back as they were after the test."""
    saved = {
        name: logging.getLogger(name).handlers[:] for name in ("gunicorn.error", "gunicorn.access")
    }
    yield
    for name, handlers in saved.items():
        logging.getLogger(name).handlers = handlers


def _gunicorn_access_logger() -> tuple[RedactingLogger, io.StringIO]:
    """Gunicorn's logger as configured here, its access log (`--access-logfile -`) written to
    the returned buffer."""
    config = Config()
    config.set("accesslog", "-")
    logger = RedactingLogger(config)
    out = io.StringIO()
    for handler in logger.access_log.handlers:
        handler.setStream(out)
    return logger, out


def test_gunicorn_access_log_is_redacted(gunicorn_loggers: None) -> None:
    # given: gunicorn with an access log (`--access-logfile -`) and this project's logger
    logger, out = _gunicorn_access_logger()
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/v1/consent?userId={USER_ID}&anonymousId={ANONYMOUS_ID}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": f"https://shop.example.com/account?email={EMAIL_QUOTED}",
        "HTTP_USER_AGENT": "curl/8.5.0",
    }
    response = SimpleNamespace(status="200 OK", headers=[], sent=117)

    # when
    logger.access(response, [], environ, timedelta(milliseconds=3))

    # then
    text = out.getvalue()
    for sentinel in QUERY_SENTINELS:
        assert sentinel not in text
    assert (
        f'"GET /v1/consent?userId={PARAM_MASK}&anonymousId={PARAM_MASK} HTTP/1.1" 200 117' in text
    )
    assert f'"https://shop.example.com/account?email={PARAM_MASK}" "curl/8.5.0"' in text
    assert all(
        any(isinstance(f, PiiRedactingFilter) for f in handler.filters)
        for handler in (*logger.error_log.handlers, *logger.access_log.handlers)
    )


def test_gunicorn_reads_the_redacting_logger_from_its_config_file() -> None:
    """gunicorn reads ./gunicorn.conf.py by default; without it, its own handlers (which do
    not propagate to ours) would write request lines as they came."""
    # given
    config_file = Path(settings.BASE_DIR) / "gunicorn.conf.py"

    # when
    logger_class = runpy.run_path(str(config_file))["logger_class"]

    # then
    assert import_string(logger_class) is RedactingLogger


def test_an_address_after_a_long_run_of_letters_is_masked_whole() -> None:
    # given: what a crafted Referer can hold (matches start only where a run starts)
    line = '"GET / HTTP/1.1" 200 1 "http://x/' + "a" * 8000 + '%40example.com" "' + "b" * 8000
    # when
    masked = redact(line)
    # then
    assert "example.com" not in masked
    assert masked.endswith('[email redacted]" "' + "b" * 8000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("client 203.0.113.95 sent 3", "client 203.0.113.0 sent 3"),
        ("from 10.2.3.4:8000", "from 10.2.3.0:8000"),  # short ones too, not only phone-like
        ("ip=192.168.100.200", "ip=192.168.100.0"),
        ("addr 2001:db8:85a3::8a2e:370:7334 ok", "addr 2001:db8:85a3:: ok"),
        ("[2001:db8:85a3:1:2:3:4:5]:443", "[2001:db8:85a3::]:443"),
        ("::ffff:203.0.113.9", "::ffff:203.0.113.0"),
        # left as they are: loopback, versions, times, dates, what is no address
        ("127.0.0.1 - - [29/Nov/2026:10:00:00]", "127.0.0.1 - - [29/Nov/2026:10:00:00]"),
        ("::1 GET /health/", "::1 GET /health/"),
        ("version 1.2.3.4.5", "version 1.2.3.4.5"),
        ("took 14:36:42 at 2026-11-28 14:36:42", "took 14:36:42 at 2026-11-28 14:36:42"),
        ("x 999.1.1.1 y", "x 999.1.1.1 y"),
        ("ratio 0.12.", "ratio 0.12."),
        # a phone written with dots is still a phone
        ("phone 415.555.0100", f"phone {PHONE_MASK}"),
    ],
)  # fmt: skip
def test_ip_addresses_are_cut_to_the_prefix_events_keep(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_gunicorn_access_log_cuts_the_client_address(gunicorn_loggers: None) -> None:
    # given
    logger, out = _gunicorn_access_logger()
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/v1/batch",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "198.51.100.77",
        "HTTP_USER_AGENT": "analytics-node",
    }
    response = SimpleNamespace(status="200 OK", headers=[], sent=16)
    # when
    logger.access(response, [], environ, timedelta(milliseconds=3))
    # then
    text = out.getvalue()
    assert "198.51.100.77" not in text
    assert "198.51.100.0 - - [" in text
