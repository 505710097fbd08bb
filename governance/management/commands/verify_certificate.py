"""`manage.py verify_certificate FILE [--keys KEYS_JSON]`: check an erasure certificate's signature.

FILE is a certificate as `GET /api/v1/requests/{id}/certificate` answers it or as the admin's
"download" link saves it. With `--keys` (a copy of
/.well-known/cdp-receipt-keys.json?workspace=<slug>, the slug the certificate's body names) the
check is offline and trusts nothing in this database; without it, the keys are read from the
database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.commands import command_published_keys, command_signed_document
from consent import selectors as consent_selectors
from governance import selectors


class Command(BaseCommand):
    help = "Verify an erasure certificate's Ed25519 signature against the published keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file", help="a certificate JSON, as GET /api/v1/requests/{id}/certificate"
        )
        parser.add_argument(
            "--keys",
            help="the keys JSON (/.well-known/cdp-receipt-keys.json?workspace=<slug>) for an "
            "offline check; "
            "default: the keys in the database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document = command_signed_document(options["file"], "certificate")
        keys = command_published_keys(options["keys"], consent_selectors.receipt_public_keys)
        check = selectors.certificate_verify(document=document, keys=keys)
        if not check.valid:
            raise CommandError(f"Invalid certificate: {check.reason}.")
        body = document["body"]
        self.stdout.write(
            f"valid {check.kid}: erasure certificate {document.get('id', '')} of request "
            f"{body.get('request', '')}, issued {body.get('issued_at', '')}"
        )
