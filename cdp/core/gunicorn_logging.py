"""Gunicorn's logger with the redaction filter on its handlers.

Gunicorn logs through its own loggers (`gunicorn.error`, and `gunicorn.access` once an access
log is asked for), with handlers of its own that do not propagate to the root logger, so the
filter settings.LOGGING installs never sees them. An access log line is a request line with
its query string (`GET /v1/consent?userId=...`) and the referer: this logger class, named by
gunicorn.conf.py (read from the working directory) or `--logger-class`, filters them too."""

from __future__ import annotations

from typing import Any

from gunicorn import glogging

from cdp.core.logging import PiiRedactingFilter


class RedactingLogger(glogging.Logger):
    def setup(self, cfg: Any) -> None:
        # Run again on every configuration reload, which replaces gunicorn's handlers.
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, PiiRedactingFilter) for f in handler.filters):
                    handler.addFilter(PiiRedactingFilter())
