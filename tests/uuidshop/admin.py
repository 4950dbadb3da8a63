from django.contrib import admin

from .models import Item, Picture, Shelf

admin.site.register([Item, Picture, Shelf])
