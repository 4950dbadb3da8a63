"""Who is calling: a server client (token), a shopper (session) or an anonymous visitor."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import PermissionDenied

from .errors import UserNotFound


def is_server_client(request) -> bool:
    """Authenticated with a ``rest_framework.authtoken`` token (server-to-server)."""
    return isinstance(getattr(request, "auth", None), Token)


#: The permission a staff user needs to read or post for another shopper (their history shows through).
ACT_FOR_SHOPPERS_PERM = "recommendations.view_interaction"


def may_act_for_others(request) -> bool:
    """Server clients (token) and staff allowed to see shoppers' events may name the user or session a call is about."""
    user = request.user
    return is_server_client(request) or bool(user and user.is_staff and user.has_perm(ACT_FOR_SHOPPERS_PERM))


def session_key(request, *, create: bool = False) -> str | None:
    """The caller's session key; ``create`` gives an anonymous visitor a session (and its cookie)."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    if not session.session_key and create:
        session.save()
    return session.session_key


def poster_scope(request) -> str:
    """A stable name of who posts: ``token:<user>``, ``user:<id>`` or ``session:<key>``."""
    if is_server_client(request):
        return f"token:{request.user.pk}"
    if request.user and request.user.is_authenticated:
        return f"user:{request.user.pk}"
    return f"session:{session_key(request, create=True)}"


def subject(request, user_id: int | None = None, session: str | None = None) -> tuple[object | None, str | None]:
    """The shopper a call is about: ``(user, None)`` or ``(None, session key or None)``.

    Without ``user_id`` / ``session``: the caller (signed-in user, or the anonymous
    session). Naming someone else needs a token, or staff with ``view_interaction``
    (403 otherwise); an unknown user is 404.
    """
    me = request.user if request.user and request.user.is_authenticated and not is_server_client(request) else None
    own_session = session_key(request)
    if user_id is None and session is None:
        return (me, None) if me is not None else (None, own_session)
    is_me = (user_id is None or (me is not None and me.pk == user_id)) and (session is None or session == own_session)
    if not is_me and not may_act_for_others(request):
        raise PermissionDenied("You may only read your own recommendations.")
    if user_id is None:
        return None, session
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise UserNotFound(f"User {user_id} does not exist.")
    return user, None
