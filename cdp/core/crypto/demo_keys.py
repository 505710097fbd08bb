"""Keys for the demo and local development, generated into var/ on first run.

They sit on disk beside the database, which is exactly what production must never do: the
warning says so every time they are created."""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoKeys:
    secret_key: str
    master_keys: str
    index_key: str


def load_or_create_demo_keys(var_dir: Path) -> DemoKeys:
    path = var_dir / "demo-keys.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
    else:
        var_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "secret_key": secrets.token_urlsafe(50),
            "master_keys": "demo1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        sys.stderr.write(
            f"WARNING: generated demo keys in {path}. They are for the demo only: in production "
            "set CDP_MASTER_KEYS, CDP_INDEX_KEY and DJANGO_SECRET_KEY from a secret store.\n"
        )
    return DemoKeys(**data)
