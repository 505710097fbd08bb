"""The request state machine refuses illegal transitions (hypothesis drives random walks)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from governance.enums import FINAL_STATES, RequestState
from governance.states import TRANSITIONS, can_transition

STATES = list(RequestState.values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=20))
def test_random_walks_only_follow_declared_transitions(targets: list[str]) -> None:
    # given
    state = RequestState.RECEIVED
    visited = [state]
    # when: every proposed step is taken only if legal
    for target in targets:
        if can_transition(state, target):
            state = RequestState(target)
            visited.append(state)
    # then: each step was declared, and nothing leaves a final state
    for before, after in itertools.pairwise(visited):
        assert after in TRANSITIONS[before]
        assert before not in FINAL_STATES


def test_every_state_has_an_entry_and_final_states_are_terminal() -> None:
    # then
    assert set(TRANSITIONS) == set(STATES)
    assert all(TRANSITIONS[s] == frozenset() for s in FINAL_STATES)
    assert not can_transition(RequestState.FULFILLED, RequestState.IN_PROGRESS)
    assert can_transition(RequestState.AWAITING_VERIFICATION, RequestState.VERIFIED)
