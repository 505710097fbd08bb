"""Read by gunicorn from its working directory (or pass `-c PATH`): its own log handlers,
the access log's included, redact personal data like the application's (cdp.core.logging)."""

logger_class = "cdp.core.gunicorn_logging.RedactingLogger"
