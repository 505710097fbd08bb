"""Running a piece of work in a thread of its own, for the tests of what two transactions do at
once (PostgreSQL): its exception is collected for the test to assert on, and its database
connection is closed when it ends."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connection


def in_thread(work: Any, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as exc:  # the test asserts there were none
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
