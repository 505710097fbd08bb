"""The personal-data registry. Every app that stores personal data registers a handler from its
`AppConfig.ready()`; governance runs access exports and erasures by iterating the handlers, so a
lower layer never has to know the apps above it. A test fails when a model holding personal data
(an encrypted or blind-index field, or a link to a profile) is covered by no handler."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ErasureStatus(enum.StrEnum):
    ERASED = "erased"
    NOTHING_FOUND = "nothing_found"
    RETAINED = "retained"  # kept on purpose, with the reason in `detail` (e.g. legal hold)
    FAILED = "failed"


@dataclass(frozen=True)
class DeletionRequest:
    """A deletion request an erasure owes to one recipient of the person's data (an
    activation destination that received them), for the erasure certificate. `status` is
    where it stands when the certificate is issued (queued, sent, dead); `reference` lets a
    steward follow it up (ids, never personal data)."""

    recipient: str
    kind: str
    status: str
    requests: int = 1
    reference: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ErasureReport:
    store: str
    status: ErasureStatus
    counts: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    # Recipients the handler owes a deletion request (listed per destination in the
    # certificate).
    deletion_requests: tuple[DeletionRequest, ...] = ()


@dataclass(frozen=True)
class PersonalDataHandler:
    """`export(profile) -> dict` and `erase(profile) -> ErasureReport` for the listed models."""

    name: str
    models: tuple[str, ...]
    export: Callable[[Any], dict[str, Any]]
    erase: Callable[[Any], ErasureReport]
    # Lower numbers erase first; keys are destroyed by the handler that owns them, last.
    erase_order: int = 100
    # `settle(workspace_id, began)`, run before the erasure's transaction and outside every
    # lock it takes: lets the store's writes in flight land (the intake buffer stores what was
    # received before `began`, waiting for batches other workers hold; inside the transaction
    # it would wait for workers that may be waiting for the erasure's own locks).
    settle: Callable[[int, datetime], None] | None = None
    # `erase_unmatched(workspace) -> ErasureReport`, for an erasure whose contact matches no
    # profile: stores that may hold the person's data before it reaches a profile (a buffer
    # of unresolved messages) erase what carries the identifiers just suppressed. Handlers
    # without it report nothing found.
    erase_unmatched: Callable[[Any], ErasureReport] | None = None


_handlers: dict[str, PersonalDataHandler] = {}


def register(handler: PersonalDataHandler) -> None:
    existing = _handlers.get(handler.name)
    if existing is not None and existing is not handler:
        raise ValueError(f"a personal-data handler named {handler.name!r} is registered already")
    _handlers[handler.name] = handler


def handlers() -> list[PersonalDataHandler]:
    """Registered handlers in erasure order."""
    return sorted(_handlers.values(), key=lambda h: (h.erase_order, h.name))


_erasure_began: ContextVar[datetime | None] = ContextVar("erasure_began", default=None)


@contextmanager
def erasure_settled_at(began: datetime) -> Iterator[None]:
    """Within: the erasure being run settled its stores as of `began` (see `settle`)."""
    token = _erasure_began.set(began)
    try:
        yield
    finally:
        _erasure_began.reset(token)


def erasure_began() -> datetime | None:
    """When the erasure being run settled its stores; None when it did not (run inside a
    caller's transaction) or outside an erasure."""
    return _erasure_began.get()


def covered_models() -> set[str]:
    return {label for h in _handlers.values() for label in h.models}


def uncovered(model_labels: Iterable[str]) -> list[str]:
    covered = covered_models()
    return sorted(label for label in model_labels if label not in covered)


# --- The processing registry: who receives personal data ---------------------------------------
#
# The records of processing (GDPR Art. 30(1)(d)-(e)) list the recipients of personal data and
# the transfers to third countries. Recipients are configured in apps above governance (the
# destinations of activation), so each such app registers a provider from its `ready()`:
# `provider(workspace) -> Iterable[Recipient]`, and governance's report iterates them.


@dataclass(frozen=True)
class Recipient:
    """One recipient of a workspace's personal data (e.g. an activation destination)."""

    name: str
    kind: str  # e.g. "destination", "processor"
    purposes: tuple[str, ...] = ()  # purpose keys the data is sent for
    data_categories: tuple[str, ...] = ()
    country: str = ""  # ISO 3166 code of where it processes the data, "" if unknown
    safeguards: str = ""  # for a transfer outside the EEA: adequacy, SCCs, ...
    detail: str = ""


RecipientProvider = Callable[[Any], Iterable[Recipient]]

_recipient_providers: dict[str, RecipientProvider] = {}


def register_recipients(name: str, provider: RecipientProvider) -> None:
    """Register `provider(workspace)`, listing the recipients an app sends personal data to."""
    existing = _recipient_providers.get(name)
    if existing is not None and existing is not provider:
        raise ValueError(f"a recipient provider named {name!r} is registered already")
    _recipient_providers[name] = provider


def unregister_recipients(name: str) -> None:
    _recipient_providers.pop(name, None)


def recipients(workspace: Any) -> list[tuple[str, Recipient]]:
    """(provider name, recipient) for every registered provider, in provider-name order."""
    return [
        (name, recipient)
        for name in sorted(_recipient_providers)
        for recipient in _recipient_providers[name](workspace)
    ]
