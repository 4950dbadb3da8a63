"""The plugin's shopper-facing URLs, ``path("", include("recommendations.urls"))``; the API is separate."""

from django.urls import path

from . import views

app_name = "visrec"

urlpatterns = [
    path("r/<str:token>/", views.recommendation_click, name="click"),
]
