"""The personal-data registry. Every app that stores personal data registers a handler from its
`AppConfig.ready()`; governance runs access exports and erasures by iterating the handlers, so a
lower layer never has to know the apps above it. A test fails when a model holding personal data
(an encrypted or blind-index field, or a link to a profile) is covered by no handler."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class ErasureStatus(enum.StrEnum):
    ERASED = "erased"
    NOTHING_FOUND = "nothing_found"
    RETAINED = "retained"  # kept on purpose, with the reason in `detail` (e.g. legal hold)
    FAILED = "failed"


@dataclass(frozen=True)
class ErasureReport:
    store: str
    status: ErasureStatus
    counts: dict[str, int] = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True)
class PersonalDataHandler:
    """`export(profile) -> dict` and `erase(profile) -> ErasureReport` for the listed models."""

    name: str
    models: tuple[str, ...]
    export: Callable[[Any], dict[str, Any]]
    erase: Callable[[Any], ErasureReport]
    # Lower numbers erase first; keys are destroyed by the handler that owns them, last.
    erase_order: int = 100


_handlers: dict[str, PersonalDataHandler] = {}


def register(handler: PersonalDataHandler) -> None:
    existing = _handlers.get(handler.name)
    if existing is not None and existing is not handler:
        raise ValueError(f"a personal-data handler named {handler.name!r} is registered already")
    _handlers[handler.name] = handler


def handlers() -> list[PersonalDataHandler]:
    """Registered handlers in erasure order."""
    return sorted(_handlers.values(), key=lambda h: (h.erase_order, h.name))


def covered_models() -> set[str]:
    return {label for h in _handlers.values() for label in h.models}


def uncovered(model_labels: Iterable[str]) -> list[str]:
    covered = covered_models()
    return sorted(label for label in model_labels if label not in covered)
