"""The shop's URLs plus media served from the *current* MEDIA_ROOT (each test has its own)."""

from django.conf import settings
from django.urls import re_path
from django.views.static import serve

from visrec_shop.urls import urlpatterns as shop_urlpatterns


def media(request, path: str):
    return serve(request, path, document_root=settings.MEDIA_ROOT)


urlpatterns = [re_path(r"^media/(?P<path>.*)$", media), *shop_urlpatterns]
