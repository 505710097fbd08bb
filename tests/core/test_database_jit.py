"""The application's PostgreSQL sessions run without JIT compilation unless CDP_DATABASE_JIT is
set (cdp/settings/base.py; docs/benchmarks.md has the measurements)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from cdp.core.env import env_bool


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="a PostgreSQL setting"
)
@pytest.mark.skipif(env_bool("CDP_DATABASE_JIT", False), reason="CDP_DATABASE_JIT is set")
@pytest.mark.django_db
def test_sessions_run_without_jit() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
    assert "-c jit=off" in settings.DATABASES["default"]["OPTIONS"]["options"]


def test_options_given_in_the_url_are_kept_and_a_jit_choice_there_wins() -> None:
    import runpy

    for url, expected in (
        ("postgres://u@h:5432/db?options=-c%20statement_timeout%3D5000",
         "-c statement_timeout=5000 -c jit=off"),
        ("postgres://u@h:5432/db?options=-c%20jit%3Don", "-c jit=on"),
    ):  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DATABASE_URL", url)
            patch.delenv("CDP_DATABASE_JIT", raising=False)
            loaded = runpy.run_path(str(settings.BASE_DIR / "cdp" / "settings" / "base.py"))
        assert loaded["DATABASES"]["default"]["OPTIONS"]["options"] == expected
