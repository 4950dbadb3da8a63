from django.urls import path, re_path

from . import views

app_name = "visrec_api"

urlpatterns = [
    path("products/popular/", views.PopularProductsView.as_view(), name="popular"),
    path("products/<int:pk>/similar/", views.SimilarProductsView.as_view(), name="similar"),
    path("products/<int:pk>/complements/", views.ComplementsView.as_view(), name="complements"),
    path("recommendations/for-you/", views.ForYouView.as_view(), name="for-you"),
    path("search/by-image/", views.SearchByImageView.as_view(), name="search-by-image"),
    path("events/", views.EventsView.as_view(), name="events"),
    re_path(r"^.*$", views.NoEndpointView.as_view(), name="no-endpoint"),
]
