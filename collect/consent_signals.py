"""Consent signals that ride on collected events, recorded in the consent ledger.

- `Sec-GPC: 1` on the collection request (carried per message as `InboundMessage.gpc`, so it
  survives the asynchronous intake): a Global Privacy Control opt-out of every sale/share
  purpose, method `gpc` (`consent_apply_gpc` records it only while not yet opted out).
- Segment's `context.consent.categoryPreferences` (`{"Advertising": true, ...}`) and
  RudderStack's `context.consentManagement` (`{"allowedConsentIds": [...],
  "deniedConsentIds": [...]}`), method `api`: category names and consent ids are matched to the
  workspace's purpose keys (case-insensitive, spaces and hyphens as underscores); anything else
  is ignored. A malformed consent object is ignored too: it never costs the event.

Banners send the same preferences on every event, so only decisions that differ from the
profile's current state are recorded (a refusal of a granted purpose as a withdrawal), at
most one `consent_record` per profile and batch (the latest message of the profile that
carries preferences speaks for the batch). A message older than the profile's last consent
change does not overturn it: events queued offline replay preferences the person may since
have changed in the preference centre."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from consent import selectors as consent_selectors
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.services import Evidence, Subject
from profiles import selectors as profile_selectors
from profiles.contracts import InboundMessage
from profiles.enums import IdentifierType

__all__ = ["consent_signals_apply", "purpose_key_for"]

_SEPARATORS = re.compile(r"[\s\-]+")
_OPTED_OUT = (Decision.DENIED, Decision.WITHDRAWN)


def purpose_key_for(name: str) -> str:
    """A banner's category name or consent id as a purpose key: "Marketing Email" ->
    "marketing_email"."""
    return _SEPARATORS.sub("_", name.strip().lower())


def consent_signals_apply(
    *, source: Any, messages: Sequence[InboundMessage], profile_ids: Sequence[Any]
) -> None:
    """Record the GPC opt-outs and banner preferences carried by stored messages from
    `source`; `profile_ids` runs parallel to `messages` (None for a message not stored)."""
    gpc: dict[Any, tuple[InboundMessage, Subject]] = {}
    preferences: dict[Any, tuple[InboundMessage, Subject, dict[str, Any]]] = {}
    for message, profile_id in zip(messages, profile_ids, strict=True):
        subject = _subject(message, profile_id) if profile_id is not None else None
        if subject is None:
            continue
        if message.gpc and _later(message, gpc.get(profile_id)):
            gpc[profile_id] = (message, subject)
        signals = _preference_signals(message.context)
        if signals and _later(message, preferences.get(profile_id)):
            preferences[profile_id] = (message, subject, signals)
    if not gpc and not preferences:
        return

    workspace = source.workspace
    consent_services.purposes_ensure_defaults(workspace=workspace)
    purpose_list = list(consent_selectors.purpose_list(workspace=workspace))
    purposes = {p.key: p for p in purpose_list}
    # The subjects' and profiles' ledger locks first: a change the consent API or the
    # preference centre commits meanwhile is in the states read next, and the decisions below
    # do not overturn it with an older message's preferences.
    consent_services.consent_subjects_lock(
        workspace=workspace,
        subjects=[
            *(subject for _message, subject in gpc.values()),
            *(subject for _message, subject, _signals in preferences.values()),
        ],
    )
    # Every profile's current state in one read; the changes are decided in memory, in the
    # order the per-profile calls would make them (GPC first), each seeing the ones before,
    # and recorded in one consent_record_many call.
    states = consent_selectors.consent_states_for_profiles(
        workspace=workspace, profile_ids=list(dict.fromkeys([*gpc, *preferences]))
    )
    now = timezone.now()
    changes: list[consent_services.ConsentChange] = []

    def decided(profile_id: Any, change: consent_services.ConsentChange) -> None:
        server_time = consent_services.change_time(now, len(changes))
        changes.append(change)
        for key, decision in change.decisions.items():
            states[profile_id][key] = {
                "decision": decision,
                "updated_at": server_time,
                "needs_reconsent": key in change.needs_reconsent,
            }

    for profile_id, (message, subject) in gpc.items():
        current = {key: state["decision"] for key, state in states[profile_id].items()}
        change = consent_services.gpc_change(
            purposes=purpose_list,
            current=current,
            subject=subject,
            evidence=_evidence(source, message, Method.GPC, {"gpc": True}),
        )
        if change is not None:
            decided(profile_id, change)
    for profile_id, (message, subject, signals) in preferences.items():
        wanted = _decisions(signals, purposes.keys())
        if message.gpc:
            # GPC on the same request outranks a banner's opt-in to sale or sharing.
            wanted = {
                key: decision
                for key, decision in wanted.items()
                if not (decision == Decision.GRANTED and purposes[key].sale_or_share)
            }
        current_state = states[profile_id]
        found = {
            key: _withdrawal(current_state.get(key), decision)
            for key, decision in wanted.items()
            if _changes(current_state.get(key), decision, message)
        }
        if found:
            decided(
                profile_id,
                consent_services.ConsentChange(
                    subject=subject,
                    decisions=found,
                    evidence=_evidence(source, message, Method.API, signals),
                ),
            )
    consent_services.consent_record_many(workspace=workspace, changes=changes, now=now)


def _said_at(message: InboundMessage) -> Any:
    """When the message says its preferences were expressed: its timestamp, but never after
    it was received (a client clock ahead of ours must not outrank later changes)."""
    return min(message.timestamp, message.received_at)


def _later(message: InboundMessage, seen: tuple[Any, ...] | None) -> bool:
    """Whether `message` is at least as recent as the one kept so far (`seen[0]`); messages
    arrive in order, so a tie goes to the one seen last."""
    return seen is None or _said_at(message) >= _said_at(seen[0])


def _subject(message: InboundMessage, profile_id: Any) -> Subject | None:
    """The message's identity, userId before anonymousId, normalized as profiles index it.
    A message that did not prove its userId (identity verification) speaks for its browser's
    anonymousId alone; collection removed its userId already, this keeps it so."""
    user_id = message.user_id if message.identity_verified else None
    for kind, value in (
        (IdentifierType.USER_ID, user_id),
        (IdentifierType.ANONYMOUS_ID, message.anonymous_id),
    ):
        normalized = profile_selectors.identifier_normalize(identifier_type=kind, value=value)
        if normalized is not None:
            return Subject(type=str(kind), value=normalized, profile_id=profile_id)
    return None


def _preference_signals(context: dict[str, Any]) -> dict[str, Any]:
    """The consent objects of a message, as received; only well-formed ones."""
    signals: dict[str, Any] = {}
    consent = context.get("consent")
    if isinstance(consent, dict) and isinstance(consent.get("categoryPreferences"), dict):
        signals["categoryPreferences"] = consent["categoryPreferences"]
    management = context.get("consentManagement")
    if isinstance(management, dict) and any(
        isinstance(management.get(name), list) for name in ("allowedConsentIds", "deniedConsentIds")
    ):
        signals["consentManagement"] = management
    return signals


def _decisions(signals: dict[str, Any], keys: Any) -> dict[str, str]:
    """Purpose key -> decision; a purpose both allowed and denied in one message is denied."""
    granted: set[str] = set()
    denied: set[str] = set()
    for name, value in signals.get("categoryPreferences", {}).items():
        if isinstance(value, bool):
            (granted if value else denied).add(purpose_key_for(str(name)))
    management = signals.get("consentManagement", {})
    for field, target in (("allowedConsentIds", granted), ("deniedConsentIds", denied)):
        ids = management.get(field)
        if isinstance(ids, list):
            target.update(purpose_key_for(i) for i in ids if isinstance(i, str))
    decisions: dict[str, str] = dict.fromkeys(granted & set(keys), Decision.GRANTED)
    decisions.update(dict.fromkeys(denied & set(keys), Decision.DENIED))
    return decisions


def _withdrawal(state: dict[str, Any] | None, decision: str) -> str:
    """A refusal of what the person had granted is a withdrawal (as the preference centre
    records it), any other refusal a denial."""
    return consent_services.refusal_recorded_as(
        current=state["decision"] if state is not None else None, decision=decision
    )


def _changes(state: dict[str, Any] | None, decision: str, message: InboundMessage) -> bool:
    if state is None:
        return True
    if state["updated_at"] > _said_at(message):
        return False
    if decision == Decision.DENIED:
        return state["decision"] not in _OPTED_OUT
    return state["decision"] != decision


def _evidence(
    source: Any, message: InboundMessage, method: str, signals: dict[str, Any]
) -> Evidence:
    context = message.context
    page = context.get("page")
    user_agent = context.get("userAgent")
    page_url = page.get("url") if isinstance(page, dict) else None
    return Evidence(
        method=method,
        jurisdiction="",  # not known from an event
        source_id=source.pk,
        client_time=message.timestamp,
        ip=message.ip,
        user_agent=user_agent if isinstance(user_agent, str) else None,
        page_url=page_url if isinstance(page_url, str) else None,
        signals=signals,
    )
