from cdp.core.exceptions import Conflict, InvalidInput, NotFound


class MatchSettingsInvalid(InvalidInput):
    code = "invalid_match_settings"
    default_message = "The match settings are not valid."


class MatchCandidateNotFound(NotFound):
    code = "match_candidate_not_found"
    default_message = "No such match candidate."


class MatchCandidateReviewed(Conflict):
    code = "match_candidate_reviewed"
    default_message = "This candidate was reviewed already."


class MatchCandidateStale(Conflict):
    code = "match_candidate_stale"
    default_message = (
        "One of the two profiles was merged or erased since this candidate was proposed; "
        "run matching again."
    )


class MatchRunInProgress(Conflict):
    code = "match_run_in_progress"
    default_message = "A matching run of this workspace is in progress."
