from typing import Any

from django.core.management.base import BaseCommand, CommandError

from governance import services


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits non-zero naming the first broken entry."

    def handle(self, *args: Any, **options: Any) -> None:
        result = services.audit_chain_verify()
        if result.first_break is not None:
            raise CommandError(
                f"Audit chain broken at entry {result.first_break.entry_id}: "
                f"{result.first_break.reason} ({result.checked} entries checked)."
            )
        self.stdout.write(f"Audit chain intact: {result.checked} entries verified.")
