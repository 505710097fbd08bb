"""`manage.py verify_receipt FILE [--keys KEYS_JSON]`: check a consent receipt's signature.

FILE is a receipt as `GET /v1/consent/receipts/{id}` answers it. With `--keys` (a copy of
/.well-known/cdp-receipt-keys.json?workspace=<slug>, the slug the receipt's body names, or of
/.well-known/cdp-receipt-keys.json?kid=<kid>, the receipt's kid, for a receipt signed before
receipts named their workspace) the check is offline and trusts nothing in this database;
without it, the keys are read from the database. A receipt that names its workspace verifies
only with a key of that workspace."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.commands import command_published_keys, command_signed_document
from consent import selectors


class Command(BaseCommand):
    help = "Verify a consent receipt's Ed25519 signature against the published receipt keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a receipt JSON, as GET /v1/consent/receipts/{id}")
        parser.add_argument(
            "--keys",
            help="the keys JSON (/.well-known/cdp-receipt-keys.json?workspace=<slug>, or "
            "?kid=<kid> for a receipt whose body names no workspace) for an offline check; "
            "default: the keys in the database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        receipt = command_signed_document(options["file"], "receipt")
        keys = command_published_keys(options["keys"], selectors.receipt_public_keys)
        check = selectors.receipt_verify(receipt=receipt, keys=keys)
        if not check.valid:
            raise CommandError(f"Invalid receipt: {check.reason}.")
        self.stdout.write(f"valid {check.kid}")
