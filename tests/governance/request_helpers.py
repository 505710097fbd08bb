"""Helpers for the data-subject request tests: a frozen clock, a subject with a profile, and a
request moved to a given state through the services."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from unittest import mock

from django.core import mail

from governance import services
from profiles import services as profile_services
from tests.profiles.ingest_helpers import msg

SUBJECT_EMAIL = "Ada.Subject@Example.com"
SUBJECT_EMAIL_NORMALIZED = "ada.subject@example.com"


@contextlib.contextmanager
def frozen(at: datetime) -> Iterator[None]:
    with mock.patch("django.utils.timezone.now", return_value=at):
        yield


def subject_profile(workspace: Any, email: str = SUBJECT_EMAIL) -> Any:
    """Ingest an identify call carrying `email`; return the profile it resolved to."""
    source = profile_services.source_create(workspace=workspace, name="Web")
    outcome = profile_services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="subject-1", traits={"email": email})],
    )
    from profiles import selectors

    return selectors.profile_get(workspace=workspace, profile_id=outcome.profile_ids[0])


def code_from_outbox() -> str:
    match = re.search(r"verification code is (\d{6})", str(mail.outbox[-1].body))
    assert match is not None
    return match.group(1)


def submitted(
    workspace: Any,
    *,
    request_type: str = "access",
    regime: str = "gdpr",
    contact_type: str = "email",
    contact: str = SUBJECT_EMAIL,
    details: dict[str, Any] | None = None,
    received_at: datetime | None = None,
) -> services.SubmittedRequest:
    return services.request_submit(
        workspace=workspace,
        request_type=request_type,
        regime=regime,
        contact_type=contact_type,
        contact=contact,
        details=details,
        received_at=received_at,
    )


def verified(workspace: Any, **kwargs: Any) -> Any:
    dsr = submitted(workspace, **kwargs).request
    if dsr.state == "awaiting_verification":
        services.request_verify_manually(request=dsr, actor=None, note="Checked by phone.")
    return dsr


def in_progress(workspace: Any, actor: Any = None, **kwargs: Any) -> Any:
    dsr = verified(workspace, **kwargs)
    return services.request_approve(request=dsr, actor=actor)
