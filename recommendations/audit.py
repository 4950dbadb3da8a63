"""The admin log of the shop owner's cockpit: every rule, retrain, activation and experiment change.

Cockpit views call :func:`log_change` so the action shows in the object's admin
"History" and in the admin's "Recent actions", like any admin edit.
"""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

__all__ = ["ADDITION", "CHANGE", "DELETION", "log_change"]


def log_change(user, obj, message: str, action_flag: int = CHANGE) -> LogEntry | None:
    """Write ``message`` about ``obj`` to the admin log as ``user`` (skipped for anonymous users).

    Returns the entry, or None when there is no authenticated user to attribute it to
    (e.g. a nightly Celery task; those are recorded in their TaskRun instead).
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return LogEntry.objects.log_actions(user.pk, [obj], action_flag, change_message=message, single_object=True)
