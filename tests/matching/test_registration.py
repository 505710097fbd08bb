"""The matching models are audited (without personal-data fields) and the candidates, which
link to profiles, are covered by a personal-data handler (tests/core/test_registry.py checks
the other apps the same way)."""

from __future__ import annotations

from django.apps import apps

from cdp.core import audit, registry


def test_every_matching_model_but_the_keys_is_audited() -> None:
    models = list(apps.get_app_config("matching").get_models())
    assert {m._meta.label for m in models} == {
        "matching.MatchSettings", "matching.MatchRun", "matching.MatchCandidate",
        "matching.MatchKeys",
    }  # fmt: skip
    assert [m._meta.label for m in models if not audit.is_registered(m)] == ["matching.MatchKeys"]
    assert "comparison" in audit.excluded_fields(apps.get_model("matching", "MatchCandidate"))


def test_candidates_and_keys_are_covered_by_a_personal_data_handler() -> None:
    assert registry.uncovered(["matching.MatchCandidate", "matching.MatchKeys"]) == []
