"""The application's PostgreSQL sessions run without JIT compilation unless CDP_DATABASE_JIT is
set (cdp/settings/base.py; docs/benchmarks.md has the measurements)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

pytestmark = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="a PostgreSQL setting"
)


@pytest.mark.django_db
def test_sessions_run_without_jit() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
    assert "-c jit=off" in settings.DATABASES["default"]["OPTIONS"]["options"]
