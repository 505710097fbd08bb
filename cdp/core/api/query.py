"""Query parameters of the management lists: a parameter a list does not know is refused, not
ignored. Ignored, a misspelt filter (`?profile_id=` for `?profile=`, `?status=` for
`?state=`) answered the whole list, more than the caller asked for."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.request import Request
from rest_framework.settings import api_settings

from cdp.core.exceptions import InvalidInput

# The cursor pagination's (cdp.core.api.pagination).
PAGINATION_PARAMETERS = frozenset({"cursor", "page_size"})


class UnknownParameter(InvalidInput):
    code = "unknown_parameter"
    default_message = "Unknown query parameter."


def common_parameters() -> set[str]:
    """What every list takes: the pagination parameters, and `?format=json`, which DRF reads."""
    common = set(PAGINATION_PARAMETERS)
    if api_settings.URL_FORMAT_OVERRIDE:
        common.add(api_settings.URL_FORMAT_OVERRIDE)
    return common


def reject_unknown_parameters(request: Request, known: Iterable[str] = ()) -> None:
    """Raise UnknownParameter naming every query parameter that is neither common to the lists
    nor one of `known` (the list's documented filters)."""
    unknown = sorted(set(request.query_params) - common_parameters() - set(known))
    if unknown:
        raise UnknownParameter(
            f"Unknown query parameter(s): {', '.join(unknown)}.", extra={"parameters": unknown}
        )
