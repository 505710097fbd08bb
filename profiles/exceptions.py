from cdp.core.exceptions import ApplicationError, Conflict, InvalidInput, NotFound


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"
    default_message = "No such workspace."


class WorkspaceExists(Conflict):
    code = "workspace_exists"
    default_message = "A workspace with that slug exists already."


class UnknownPermission(InvalidInput):
    code = "unknown_permission"


class ProfileNotFound(NotFound):
    code = "profile_not_found"
    default_message = "No such profile."


__all__ = [
    "ApplicationError",
    "ProfileNotFound",
    "UnknownPermission",
    "WorkspaceExists",
    "WorkspaceNotFound",
]
