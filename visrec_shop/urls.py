"""URL configuration: shop pages, admin, API and (optionally) media files."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("recommendations.api.urls")),
    path("api/", include("recommendations.api.docs")),  # schema/, docs/ (Swagger UI), redoc/
    path("", include("catalog.urls")),
]

if settings.SERVE_MEDIA:
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]
