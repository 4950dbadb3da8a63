"""Adapters for shop frameworks (each imports its shop lazily): :mod:`.oscar` for django-oscar."""
