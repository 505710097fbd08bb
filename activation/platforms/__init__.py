"""The model-free destination layer: each ad platform's normalization and hashing, and the
upload files and request bodies built from them. Pure functions over iterators; the sync code
decides who is sent (consent gate) and records what was sent (delivery ledger)."""

from activation.platforms.contact import Contact
from activation.platforms.errors import AudienceTooSmall, ExportFieldsInvalid
from activation.platforms.files import (
    DEFAULT_META_SCHEMA,
    DEFAULT_MIN_AUDIENCE_SIZE,
    GOOGLE_CSV_COLUMNS,
    META_CSV_COLUMNS,
    META_MAX_ROWS_PER_REQUEST,
    META_SCHEMA_KEYS,
    ExportStats,
    MetaUsersRequest,
    check_min_audience_size,
    google_user_data_operations,
    meta_users_requests,
    write_csv_export,
    write_google_customer_match_csv,
    write_google_customer_match_removal_csv,
    write_jsonl_export,
    write_meta_customer_list_csv,
    write_meta_payload_json,
)
from activation.platforms.normalize import sha256_hex

__all__ = [
    "DEFAULT_META_SCHEMA",
    "DEFAULT_MIN_AUDIENCE_SIZE",
    "GOOGLE_CSV_COLUMNS",
    "META_CSV_COLUMNS",
    "META_MAX_ROWS_PER_REQUEST",
    "META_SCHEMA_KEYS",
    "AudienceTooSmall",
    "Contact",
    "ExportFieldsInvalid",
    "ExportStats",
    "MetaUsersRequest",
    "check_min_audience_size",
    "google_user_data_operations",
    "meta_users_requests",
    "sha256_hex",
    "write_csv_export",
    "write_google_customer_match_csv",
    "write_google_customer_match_removal_csv",
    "write_jsonl_export",
    "write_meta_customer_list_csv",
    "write_meta_payload_json",
]
