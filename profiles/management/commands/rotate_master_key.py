from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from profiles import services


class Command(BaseCommand):
    help = (
        "Re-wrap every data key under the primary master key (the first of CDP_MASTER_KEYS). "
        "Put the new key first, keep the old one listed, run this, then remove the old one. "
        "Data is not re-encrypted; safe to interrupt and run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        result = services.data_keys_rewrap(batch_size=options["batch_size"])
        self.stdout.write(
            f"Re-wrapped {result.rewrapped} data keys under {result.primary_kek_id}; "
            f"{result.already_current} were already under it."
        )
