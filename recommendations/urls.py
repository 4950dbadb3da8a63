"""The plugin's shop-facing URLs: ``path("", include("recommendations.urls"))`` (any prefix works)."""

from django.urls import path

from . import views

app_name = "visrec"

urlpatterns = [
    path("r/<str:token>/", views.recommendation_click, name="click"),
]
