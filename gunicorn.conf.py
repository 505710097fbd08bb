"""Read by gunicorn from its working directory (or pass `-c PATH`): its own log handlers,
the access log's included, redact personal data like the application's (cdp.core.logging)."""

logger_class = "cdp.core.gunicorn_logging.RedactingLogger"


def post_worker_init(worker: object) -> None:
    """Each worker, once it has loaded the application, freezes its start-up objects
    (cdp.core.gc)."""
    from cdp.core.gc import gc_tune

    gc_tune()
