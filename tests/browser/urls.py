"""The shop's URLs plus media served from the *current* MEDIA_ROOT (each test has its own)."""

from django.urls import re_path

from visrec_shop.urls import media
from visrec_shop.urls import urlpatterns as shop_urlpatterns

urlpatterns = [re_path(r"^media/(?P<path>.*)$", media), *shop_urlpatterns]
