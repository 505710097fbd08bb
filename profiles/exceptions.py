from cdp.core.exceptions import ApplicationError, Conflict, InvalidInput, NotFound


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"
    default_message = "No such workspace."


class WorkspaceExists(Conflict):
    code = "workspace_exists"
    default_message = "A workspace with that slug exists already."


class UnknownPermission(InvalidInput):
    code = "unknown_permission"


class UnknownIdentifierType(InvalidInput):
    code = "unknown_identifier_type"
    default_message = "Unknown identifier type."


class ProfileNotFound(NotFound):
    code = "profile_not_found"
    default_message = "No such profile."


class MergeNotFound(NotFound):
    code = "merge_not_found"
    default_message = "No such merge."


class MergeRefused(Conflict):
    """A merge outside ingestion that the workspace's rules or caps do not allow; `code` says
    which (profile_not_active, same_profile, merge_cap, identity_cap, identifier_limit)."""

    code = "merge_refused"
    default_message = "These profiles cannot be merged."


class UnmergeRefused(Conflict):
    """An unmerge that cannot be done now; `code` says why (already_unmerged,
    later_merge_depends, profile_not_active)."""

    code = "unmerge_refused"
    default_message = "This merge cannot be undone now."


__all__ = [
    "ApplicationError",
    "MergeNotFound",
    "MergeRefused",
    "ProfileNotFound",
    "UnknownPermission",
    "UnmergeRefused",
    "WorkspaceExists",
    "WorkspaceNotFound",
]
