"""The API documentation pages, served from this site only (sidecar assets, no CDN, no web fonts)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView


class LocalRedocView(SpectacularRedocView):
    """ReDoc without the Google Fonts links of drf-spectacular's template."""

    template_name = "visrec/api/redoc.html"


urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", LocalRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
