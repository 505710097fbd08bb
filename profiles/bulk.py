"""Set-wise SQL for the ingestion pipeline, on PostgreSQL and SQLite: the generic writers of
`cdp.core.bulk` (COPY on PostgreSQL, with a temporary table for `ON CONFLICT` and `RETURNING`;
multi-row VALUES on SQLite; `UPDATE .. FROM (VALUES ..)`), under the name the profiles modules
use. The other apps write through `cdp.core.bulk` directly."""

from __future__ import annotations

from cdp.core.bulk import CHUNK, insert, model_rows, update_from_values

__all__ = ["CHUNK", "insert", "model_rows", "update_from_values"]
