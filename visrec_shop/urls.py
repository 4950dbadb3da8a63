"""URL configuration: shop pages, admin, API and (optionally) media files."""

import posixpath

from django.conf import settings
from django.contrib import admin
from django.http import Http404
from django.urls import include, path, re_path
from django.views.static import serve

from catalog.tasks import PRIVATE_MEDIA_PREFIXES


def media(request, path: str):
    """A public media file; admin uploads and import reports (private prefixes) are never served."""
    name = posixpath.normpath(path.replace("\\", "/")).lstrip("/") + "/"
    if name.startswith(PRIVATE_MEDIA_PREFIXES):
        raise Http404("not a public file")
    return serve(request, path, document_root=settings.MEDIA_ROOT)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("recommendations.api.urls")),
    path("api/", include("recommendations.api.docs")),  # schema/, docs/ (Swagger UI), redoc/
    path("", include("recommendations.urls")),  # r/<token>/: a recommended item's click
    path("", include("catalog.urls")),
]

if settings.SERVE_MEDIA:
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", media)]
