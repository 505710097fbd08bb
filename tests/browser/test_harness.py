"""The browser tests' prerequisites: a newcomer without Chromium or the npm packages gets a skip
that names what is missing and the command that installs it; CI (`CI` set) gets a failure, so
it can never pass by skipping the browser tests. No browser is started here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import harness


@pytest.fixture
def missing(tmp_path: Path) -> Path:
    return tmp_path / "node_modules" / "bundle.js"


def test_a_missing_prerequisite_skips_with_its_path_and_remedy(
    missing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: not in CI
    monkeypatch.delenv("CI", raising=False)

    # when
    with pytest.raises(pytest.skip.Exception) as skipped:
        harness.require(missing, harness.NPM_REMEDY)

    # then
    assert str(skipped.value) == f"{missing} not found: {harness.NPM_REMEDY}"
    assert "npm ci --prefix tests/browser" in str(skipped.value)


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_a_missing_prerequisite_fails_in_ci(
    missing: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # given
    monkeypatch.setenv("CI", value)

    # when
    with pytest.raises(pytest.fail.Exception) as failed:
        harness.require(missing, harness.NPM_REMEDY)

    # then
    assert str(failed.value) == (
        f"{missing} not found: {harness.NPM_REMEDY} (CI is set, so this fails rather than skips)"
    )


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_ci_set_to_a_false_value_still_skips(
    missing: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # given
    monkeypatch.setenv("CI", value)

    # when / then
    with pytest.raises(pytest.skip.Exception):
        harness.require(missing, harness.NPM_REMEDY)


def test_a_present_prerequisite_neither_skips_nor_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    monkeypatch.setenv("CI", "true")
    present = tmp_path / "chromium"
    present.touch()

    # when / then: neither a skip nor a failure is raised
    harness.require(present, harness.CHROMIUM_REMEDY)


def test_missing_chromium_names_the_debian_package(
    missing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(harness, "CHROMIUM", missing)

    # when
    with pytest.raises(pytest.skip.Exception) as skipped:
        harness.require_chromium()

    # then
    assert str(skipped.value) == f"{missing} not found: {harness.CHROMIUM_REMEDY}"
    assert "apt-get install chromium" in str(skipped.value)
