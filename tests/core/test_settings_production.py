"""cdp.settings.production and mail: SMTP by default, configured from the environment, and the
console and file backends refused (they would write DSR verification codes and export download
links where others read them) unless a deployment opts in. Each test loads the settings in a
fresh interpreter, as a web or worker process does, with only the environment it gives."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = "django.core.mail.backends.console.EmailBackend"
FILEBASED = "django.core.mail.backends.filebased.EmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"
SHOWN = (
    "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_TLS", "EMAIL_USE_SSL", "EMAIL_TIMEOUT",
)  # fmt: skip
LOAD = (
    "import json; from django.conf import settings; "
    f"print(json.dumps({{name: getattr(settings, name) for name in {SHOWN!r}}}))"
)


def load_production(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """Import the production settings in a new interpreter whose environment holds the
    required secrets and `variables`, nothing inherited (no EMAIL_* of the test run's own)."""
    environment = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "cdp.settings.production",
        "CDP_MASTER_KEYS": "k1:" + base64.b64encode(b"\x01" * 32).decode(),
        "CDP_INDEX_KEY": base64.b64encode(b"\x02" * 32).decode(),
        "DJANGO_SECRET_KEY": "production-settings-test-secret-key-0123456789-abcdefghijkl",
        "CDP_VAR_DIR": str(tmp_path),
        **variables,
    }
    return run_python(LOAD, environment)


def run_python(code: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def loaded(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_production_sends_mail_by_smtp_by_default(tmp_path: Path) -> None:
    # when: no mail variable is set
    result = load_production(tmp_path)
    # then
    assert loaded(result) == {
        "EMAIL_BACKEND": SMTP,
        "EMAIL_HOST": "localhost",
        "EMAIL_PORT": 25,
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": False,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 30,
    }


def test_production_reads_the_smtp_relay_from_the_environment(tmp_path: Path) -> None:
    # given: the password as a file, as secrets are passed
    password = tmp_path / "smtp_password"
    password.write_text("relay-password\n")
    # when
    result = load_production(
        tmp_path,
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="587",
        EMAIL_HOST_USER="cdp@example.com",
        EMAIL_HOST_PASSWORD_FILE=str(password),
        EMAIL_USE_TLS="true",
        EMAIL_TIMEOUT="5",
    )
    # then
    assert loaded(result) == {
        "EMAIL_BACKEND": SMTP,
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "cdp@example.com",
        "EMAIL_HOST_PASSWORD": "relay-password",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 5,
    }


@pytest.mark.parametrize("backend", [CONSOLE, FILEBASED], ids=["console", "filebased"])
def test_production_refuses_a_backend_that_writes_mail_where_others_read_it(
    tmp_path: Path, backend: str
) -> None:
    # when
    result = load_production(tmp_path, EMAIL_BACKEND=backend)
    # then
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: " in result.stderr
    assert f"EMAIL_BACKEND={backend} writes verification codes" in result.stderr
    assert "CDP_ALLOW_UNSAFE_EMAIL_BACKEND=1" in result.stderr


@pytest.mark.parametrize("backend", [CONSOLE, FILEBASED], ids=["console", "filebased"])
def test_production_takes_an_unsafe_backend_when_the_deployment_opts_in(
    tmp_path: Path, backend: str
) -> None:
    # when
    result = load_production(tmp_path, EMAIL_BACKEND=backend, CDP_ALLOW_UNSAFE_EMAIL_BACKEND="1")
    # then
    assert loaded(result)["EMAIL_BACKEND"] == backend


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.mail.backends.dummy.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        SMTP,
    ],
    ids=["dummy", "locmem", "smtp"],
)
def test_production_takes_backends_that_show_mail_to_no_one_else(
    tmp_path: Path, backend: str
) -> None:
    # when: the benchmarks give the dummy backend
    result = load_production(tmp_path, EMAIL_BACKEND=backend)
    # then
    assert loaded(result)["EMAIL_BACKEND"] == backend


def test_production_refuses_both_tls_and_ssl(tmp_path: Path) -> None:
    # when
    result = load_production(tmp_path, EMAIL_USE_TLS="1", EMAIL_USE_SSL="1")
    # then
    assert result.returncode != 0
    assert "Set EMAIL_USE_TLS or EMAIL_USE_SSL, not both." in result.stderr


@pytest.mark.parametrize("entry_point", ["cdp.wsgi", "cdp.asgi", "cdp.celery"])
def test_entry_points_default_to_production_and_refuse_without_keys(
    tmp_path: Path, entry_point: str
) -> None:
    # given: no settings module and no keys in the environment (a bare `gunicorn cdp.wsgi`)
    environment = {"PATH": "/usr/bin:/bin", "CDP_VAR_DIR": str(tmp_path)}
    load = (
        f"import os, {entry_point}; from django.conf import settings; "
        "print(os.environ['DJANGO_SETTINGS_MODULE']); settings.DEBUG"
    )
    # when
    result = run_python(load, environment)
    # then: the production settings, which refuse to start without their keys
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "cdp.settings.local" not in result.stdout
    assert not list(tmp_path.iterdir())  # no demo keys generated
