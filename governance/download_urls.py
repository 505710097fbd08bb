"""The export download and the export's JSON Schema (included before the other /api/v1/requests/
routes, with patterns specific enough not to shadow them). The id is matched as text, as in the
other API routes, so that a malformed one answers the JSON 404 rather than Django's HTML one."""

from django.urls import path

from governance import downloads

urlpatterns = [
    path(
        "requests/export-schema.json",
        downloads.export_schema,
        name="governance-export-schema",
    ),
    path(
        "requests/<str:request_id>/download",
        downloads.export_download,
        name="governance-export-download",
    ),
]
