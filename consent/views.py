"""The hosted preference centre: a known person, reached through a signed link (see
`services.preference_link_create`), sees their consent per purpose and changes it.

A plain Django view with a CSRF-protected form, not an API: the signed link is the only key,
and nothing about the person but their current choices is shown."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from cdp.core.exceptions import NotFound
from consent import selectors, services
from consent.enums import Decision
from profiles import selectors as profile_selectors

ALLOW = "allow"
REFUSE = "refuse"


class PreferenceForm(forms.Form):
    """One optional allow/refuse choice per purpose a person decides; a purpose left unchosen
    (nothing recorded yet, nothing picked) stays as it is."""

    def __init__(self, *args: Any, purposes: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for purpose in purposes:
            self.fields[purpose.key] = forms.ChoiceField(
                label=purpose.name,
                help_text=purpose.description,
                choices=[(ALLOW, "Allow"), (REFUSE, "Don't allow")],
                widget=forms.RadioSelect,
                required=False,
            )

    def choices(self) -> dict[str, bool]:
        return {key: value == ALLOW for key, value in self.cleaned_data.items() if value}


def _subject(token: str) -> tuple[Any, Any]:
    link = services.preference_link_read(token=token)
    if link is None:
        raise Http404("No such page.")
    try:
        workspace = profile_selectors.workspace_get_by_id(workspace_id=link.workspace_id)
        profile = profile_selectors.profile_get(workspace=workspace, profile_id=link.profile_id)
    except NotFound:
        raise Http404("No such page.") from None
    return workspace, profile


@never_cache
@require_http_methods(["GET", "POST"])
def preference_centre(request: HttpRequest, token: str) -> HttpResponse:
    workspace, profile = _subject(token)
    purposes = list(selectors.purpose_list(workspace=workspace))
    asked = [p for p in purposes if services.purpose_is_asked(p)]
    state = selectors.consent_state_for_profile(workspace=workspace, profile_id=profile.pk)
    initial = {
        key: ALLOW if entry["decision"] == Decision.GRANTED else REFUSE
        for key, entry in state.items()
    }
    status = 200
    if request.method == "POST":
        form = PreferenceForm(request.POST, purposes=asked)
        if form.is_valid():
            services.preference_centre_save(
                workspace=workspace,
                profile=profile,
                choices=form.choices(),
                ip=request.META.get("REMOTE_ADDR") or None,
                user_agent=request.headers.get("User-Agent") or None,
                page_url=request.build_absolute_uri(request.path),
            )
            # Post/redirect/get: a reload does not post the choices again.
            return _private(HttpResponseRedirect(f"{request.path}?saved=1"))
        status = 400
    else:
        form = PreferenceForm(initial=initial, purposes=asked)
    context = {
        "workspace_name": workspace.name,
        "form": form,
        "rows": [(form[p.key], state.get(p.key)) for p in asked],
        "required": [p for p in purposes if not services.purpose_is_asked(p)],
        "saved": request.GET.get("saved") == "1" and request.method == "GET",
    }
    response = render(request, "consent/preference_centre.html", context, status=status)
    return _private(response)


def _private(response: HttpResponse) -> HttpResponse:
    # The token in the address is the key to this page: never sent on to the policy site in a
    # Referer, and the page is kept out of search engines.
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
