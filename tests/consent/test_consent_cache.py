"""The cache of `GET /v1/consent` answers: served without a query, stale the moment a write
commits (a new decision, a merge, an erasure), and off when CDP_CONSENT_CACHE_SECONDS is 0."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from consent import selectors, services
from consent.enums import Decision, Method
from consent.handlers import erase_consent
from consent.services import Evidence, Subject
from profiles import services as profile_services
from profiles.models import Profile
from tests.profiles.ingest_helpers import msg


@pytest.fixture(autouse=True)
def _cache_on(settings: Any) -> Any:
    settings.CDP_CONSENT_CACHE_SECONDS = 60
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def source(workspace: Any) -> Any:
    services.purposes_ensure_defaults(workspace=workspace)
    return profile_services.source_create(workspace=workspace, name="Web")


def profile_for(source: Any, **ids: Any) -> Any:
    return profile_services.ingest_messages(source=source, messages=[msg(**ids)]).profile_ids[0]


def decide(commits: Any, workspace: Any, subject: Subject, **decisions: str) -> None:
    with commits(execute=True):
        services.consent_record(
            workspace=workspace,
            subject=subject,
            decisions=decisions,
            evidence=Evidence(method=Method.BANNER, jurisdiction="DE"),
        )


def answer(workspace: Any, **ids: str) -> dict[str, str]:
    identities = list(ids.items())
    return selectors.consent_state_for_identity(workspace=workspace, identities=identities).state


def test_a_cached_answer_is_served_without_a_query(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: an answer asked once
    profile_id = profile_for(source, anonymous_id="a-1")
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("anonymous_id", "a-1", profile_id),
        analytics=Decision.GRANTED,
    )
    first = answer(source.workspace, anonymous_id="a-1")
    # when
    with CaptureQueriesContext(connection) as queries:
        again = answer(source.workspace, anonymous_id="a-1")
    # then
    assert again == first == {"analytics": Decision.GRANTED}
    assert len(queries) == 0


def test_a_new_decision_is_visible_at_once(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a cached answer
    profile_id = profile_for(source, anonymous_id="a-2")
    subject = Subject("anonymous_id", "a-2", profile_id)
    decide(django_capture_on_commit_callbacks, source.workspace, subject, analytics="granted")
    assert answer(source.workspace, anonymous_id="a-2") == {"analytics": Decision.GRANTED}
    # when
    decide(django_capture_on_commit_callbacks, source.workspace, subject, analytics="withdrawn")
    # then
    assert answer(source.workspace, anonymous_id="a-2") == {"analytics": Decision.WITHDRAWN}


def test_a_decision_through_one_identity_refreshes_every_identity_of_the_profile(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: one profile known by an anonymousId and a userId, both answers cached
    profile_id = profile_for(source, anonymous_id="a-3", user_id="u-3")
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("user_id", "u-3", profile_id),
        advertising=Decision.GRANTED,
    )
    assert answer(source.workspace, anonymous_id="a-3") == {"advertising": Decision.GRANTED}
    assert answer(source.workspace, user_id="u-3") == {"advertising": Decision.GRANTED}
    # when: the decision changes through the userId
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("user_id", "u-3", profile_id),
        advertising=Decision.DENIED,
    )
    # then: the anonymousId's answer changed too
    assert answer(source.workspace, anonymous_id="a-3") == {"advertising": Decision.DENIED}


def test_a_merge_makes_cached_answers_stale(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: two devices with opposite decisions, both answers cached
    phone = profile_for(source, anonymous_id="phone")
    laptop = profile_for(source, anonymous_id="laptop")
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("anonymous_id", "phone", phone),
        advertising=Decision.GRANTED,
    )
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("anonymous_id", "laptop", laptop),
        advertising=Decision.DENIED,
    )
    assert answer(source.workspace, anonymous_id="phone") == {"advertising": Decision.GRANTED}
    assert answer(source.workspace, anonymous_id="laptop") == {"advertising": Decision.DENIED}
    # when: one login on both merges them
    with django_capture_on_commit_callbacks(execute=True):
        profile_services.ingest_messages(
            source=source,
            messages=[
                msg("identify", user_id="u-4", anonymous_id="phone"),
                msg("identify", user_id="u-4", anonymous_id="laptop"),
            ],
        )
    # then: both devices answer the survivor's most restrictive decision, flagged
    assert Profile.objects.filter(status="active").count() == 1
    for device in ("phone", "laptop"):
        found = selectors.consent_state_for_identity(
            workspace=source.workspace, identities=[("anonymous_id", device)]
        )
        assert found.state == {"advertising": Decision.DENIED}
        assert found.needs_reconsent == ["advertising"]


def test_an_erasure_makes_cached_answers_stale(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    profile_id = profile_for(source, anonymous_id="a-5")
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("anonymous_id", "a-5", profile_id),
        analytics=Decision.GRANTED,
    )
    assert answer(source.workspace, anonymous_id="a-5") == {"analytics": Decision.GRANTED}
    # when
    with django_capture_on_commit_callbacks(execute=True):
        erase_consent(Profile.objects.get(pk=profile_id))
    # then
    assert answer(source.workspace, anonymous_id="a-5") == {}


def test_unknown_identities_are_not_cached(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: an identity asked before the workspace knows it
    assert answer(source.workspace, anonymous_id="later") == {}
    # when
    profile_id = profile_for(source, anonymous_id="later")
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("anonymous_id", "later", profile_id),
        analytics=Decision.GRANTED,
    )
    # then
    assert answer(source.workspace, anonymous_id="later") == {"analytics": Decision.GRANTED}


def test_with_the_cache_off_every_answer_is_read_from_the_database(
    source: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    settings.CDP_CONSENT_CACHE_SECONDS = 0
    profile_id = profile_for(source, anonymous_id="a-6")
    decide(
        django_capture_on_commit_callbacks,
        source.workspace,
        Subject("anonymous_id", "a-6", profile_id),
        analytics=Decision.GRANTED,
    )
    assert answer(source.workspace, anonymous_id="a-6") == {"analytics": Decision.GRANTED}
    # when
    with CaptureQueriesContext(connection) as queries:
        again = answer(source.workspace, anonymous_id="a-6")
    # then: nothing was cached, and the answer was read again
    assert again == {"analytics": Decision.GRANTED}
    assert len(queries) > 0
    assert not [key for key in cache._cache if "consent:" in str(key)]  # type: ignore[attr-defined]
