"""Bulk import of profiles and events from CSV or JSON Lines files (optionally gzipped).

- `mapping`: the column mapping (`--map COLUMN=trait:NAME|identifier:TYPE|property:NAME`, the
  id, event, timestamp and message-id columns), checked before any row is read;
- `readers`: the file as a stream of rows, in constant memory;
- `rows`: a row -> the `InboundMessage` an SDK would have sent (identify or track), with a
  keyed-hash messageId, or the row's errors; the masked row for the error file;
- `runner`: validation and set-wise storage in batches through
  `profiles.services.ingest_messages` (the collection API's pipeline: identity resolution,
  merges, encryption), skipping messages already stored, so a re-import is a no-op;
- `storage`: the uploaded file and the error file, sealed under unowned intake keys;
- `upload`: an upload handler that seals the admin's upload as it arrives;
- `services`: jobs (`ImportJob`): create, run (command line or Celery), read the error file.
"""
