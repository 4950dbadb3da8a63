from django.urls import path

from . import views

app_name = "visrec_api"

urlpatterns = [
    path("products/popular/", views.PopularProductsView.as_view(), name="popular"),
    path("products/<int:pk>/similar/", views.SimilarProductsView.as_view(), name="similar"),
]
