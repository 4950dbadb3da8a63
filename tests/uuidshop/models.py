"""The tiny shop's models: shelves in a tree, items with UUID keys, pictures (nothing of visrec's)."""

from __future__ import annotations

import uuid

from django.db import models


class Shelf(models.Model):
    name = models.CharField(max_length=100)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")

    def __str__(self) -> str:
        return self.name


class Item(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    shelf = models.ForeignKey(Shelf, null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    available = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return f"/items/{self.pk}/"


class Picture(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="pictures")
    image = models.FileField(upload_to="pictures/")
    rank = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"picture {self.rank} of {self.item_id}"
