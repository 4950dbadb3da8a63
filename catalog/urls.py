from django.urls import path

from . import views

app_name = "shop"

urlpatterns = [
    path("", views.home, name="home"),
    path("category/<slug:slug>/", views.category, name="category"),
    path("product/<int:pk>/", views.product_detail, name="product"),
    path("search/photo/", views.search_by_photo, name="search-by-photo"),
]
