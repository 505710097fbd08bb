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


class IdentityVerificationRequired(ApplicationError):
    """A request named a userId to a source that verifies identities, without its userHash."""

    code = "identity_verification_required"
    status = 401
    # A 401 names a challenge (RFC 9110); this one is the userHash, not the write key.
    headers = {"WWW-Authenticate": 'UserHash realm="identity-verification"'}
    default_message = (
        "This source verifies identities: a request naming a userId must carry userHash, the "
        "hex HMAC-SHA256 of the userId under the source's identity-verification secret, "
        "computed by the site's server."
    )


class IdentityVerificationFailed(ApplicationError):
    code = "identity_verification_failed"
    status = 403
    default_message = "The userHash does not match the userId for this source."


class IdentityVerificationOn(Conflict):
    code = "identity_verification_on"
    default_message = (
        "Identity verification is on for this source already: its secret is unchanged. "
        "Rotate it to issue a new one."
    )


class IdentityVerificationUserIdInvalid(InvalidInput):
    """A userId with leading or trailing whitespace, named to a source that verifies
    identities: the userHash covers the userId as sent, but profiles are found by its
    normalized form, so a hash for one would vouch for another."""

    code = "invalid_user_id"
    default_message = (
        "This source verifies identities: the userId must not begin or end with whitespace "
        "(its userHash covers the userId exactly as sent)."
    )


class IdentityVerificationOff(Conflict):
    code = "identity_verification_off"
    default_message = "Identity verification is not enabled for this source."


class UnmergeRefused(Conflict):
    """An unmerge that cannot be done now; `code` says why (already_unmerged,
    later_merge_depends, profile_not_active)."""

    code = "unmerge_refused"
    default_message = "This merge cannot be undone now."


__all__ = [
    "ApplicationError",
    "IdentityVerificationFailed",
    "IdentityVerificationOff",
    "IdentityVerificationRequired",
    "MergeNotFound",
    "MergeRefused",
    "ProfileNotFound",
    "UnknownPermission",
    "UnmergeRefused",
    "WorkspaceExists",
    "WorkspaceNotFound",
]
