"""A/B experiments: which arm a shopper is in, what that arm serves, and how arms compare.

A running :class:`~recommendations.models.Experiment` splits the shoppers of a widget
(blank: similar items and for you) by a stable hash of its salt (default: its name) and
the user id, else the session key: ``treatment_percent`` % get the treatment. An arm is
either a model version (serving scores with that version's model) or blend settings
(``{"SIMILAR_BLEND": {"visual": 0.5, "model": 0.5}}`` or ``FOR_YOU_BLEND``) that override
the defaults. Lists carry ``"<name>:control"`` / ``"<name>:treatment"`` as their arm, so
impressions (and clicks, through their impression) are counted per arm.

Ending an experiment promotes its winner: a version arm is activated; a settings arm
becomes the new serving default (the ended experiments' winning settings, latest last,
over ``VISREC``; see :func:`serving_settings`), so nothing is lost on restart.

Running experiments and promoted settings are read once per process and re-read when
their stamp changes (bumped on every Experiment save or delete; ``recommendations.stamps``,
in the database, read at most every second): no query per request, and every process
sees a change within a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from . import stamps
from .conf import visrec_settings
from .models import Experiment, ModelVersion

logger = logging.getLogger(__name__)

CONTROL, TREATMENT = "control", "treatment"
WINNERS = (CONTROL, TREATMENT)
#: Widgets an experiment can change (the ones that use a model or blend settings).
WIDGETS = ("similar-items", "for-you")
#: Blend settings an arm may override, and the widget each belongs to.
SETTING_WIDGETS = {"SIMILAR_BLEND": "similar-items", "FOR_YOU_BLEND": "for-you"}
#: ``Impression.arm`` holds at most this many characters ("<name>:treatment").
MAX_NAME_LENGTH = 64 - len(":" + TREATMENT)
STAMP = "experiments"


class ExperimentError(ValueError):
    """An experiment that cannot be started, ended or promoted as asked."""


# -- the per-process snapshot ---------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Running experiments (with their versions) and the promoted serving settings."""

    running: tuple[Experiment, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


_local: dict[str, tuple[str | None, Snapshot]] = {}  # cache prefix -> (stamp read at, snapshot)
_lock = threading.Lock()


def snapshot() -> Snapshot:
    """Running experiments and promoted settings, re-read only when an experiment changed."""
    key = str(visrec_settings.CACHE_PREFIX)
    stamp = stamps.read(STAMP)
    local = _local.get(key)
    if local is not None and (stamp is None or stamp == local[0]):  # None: the database is not answering
        return local[1]
    found = _read()
    with _lock:
        _local.clear()  # one cache prefix per process (tests change it)
        _local[key] = (stamp, found)
    return found


def _read() -> Snapshot:
    running = Experiment.objects.filter(status=Experiment.RUNNING).select_related(
        "control_version", "treatment_version"
    )
    promoted: dict[str, Any] = {}
    ended = Experiment.objects.filter(status=Experiment.ENDED, winner__in=[CONTROL, TREATMENT]).order_by("ended_at")
    for experiment in ended:
        promoted.update(arm_settings(experiment, experiment.winner))
    return Snapshot(tuple(running), promoted)


def forget(*args, **kwargs) -> None:
    """Make every process re-read experiments (this one at once, others within a second)."""
    with _lock:
        _local.clear()
    stamps.bump(STAMP)


for _signal in (post_save, post_delete):
    _signal.connect(forget, sender=Experiment, dispatch_uid=f"visrec_forget_experiments_{_signal}")


def serving_settings() -> dict[str, Any]:
    """The blend settings serving uses by default: ``VISREC``, then promoted winners' settings."""
    promoted = snapshot().settings
    return {name: promoted.get(name, getattr(visrec_settings, name)) for name in SETTING_WIDGETS}


# -- assignment -----------------------------------------------------------------------------


def bucket(salt: str, shopper: str) -> int:
    """A stable number in [0, 100) for ``shopper`` under ``salt`` (the same in every process)."""
    digest = hashlib.sha256(f"{salt}:{shopper}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def _shopper(user=None, session_key: str | None = None) -> str:
    if user is not None and getattr(user, "is_authenticated", False):
        return f"u{user.pk}"
    return f"s{session_key}" if session_key else ""


def applies_to(experiment: Experiment, widget: str) -> bool:
    return widget in WIDGETS and experiment.widget in ("", widget)


def assign(widget: str, user=None, session_key: str | None = None) -> tuple[Experiment | None, str]:
    """The running experiment of ``widget`` for this shopper and its arm (``control``/``treatment``).

    ``(None, "")`` when no experiment runs for the widget or the shopper is unknown (no
    user, no session): unknown shoppers see the defaults and are not counted in any arm.
    """
    shopper = _shopper(user, session_key)
    if not shopper:
        return None, ""
    for experiment in snapshot().running:
        if applies_to(experiment, widget):
            salt = experiment.salt or experiment.name
            arm = TREATMENT if bucket(salt, shopper) < experiment.treatment_percent else CONTROL
            return experiment, arm
    return None, ""


def label(experiment: Experiment, arm: str) -> str:
    """What lists, impressions and the dashboard call an arm: ``"<name>:<arm>"``."""
    return f"{experiment.name}:{arm}"


def arm_version(experiment: Experiment, arm: str) -> ModelVersion | None:
    return experiment.treatment_version if arm == TREATMENT else experiment.control_version


def arm_settings(experiment: Experiment, arm: str) -> dict[str, Any]:
    raw = experiment.treatment_settings if arm == TREATMENT else experiment.control_settings
    return {k: v for k, v in (raw or {}).items() if k in SETTING_WIDGETS}


@dataclass(frozen=True)
class Arm:
    """What one list is served with: the model version (None: the active one), blend settings, label."""

    version: ModelVersion | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def key(self) -> str:
        """A short digest of what this arm serves (part of cached lists' keys)."""
        raw = json.dumps([self.label, self.version.pk if self.version else None, self.settings], sort_keys=True)
        return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


_forced = threading.local()


@contextmanager
def serving_with(version: ModelVersion | None = None, settings: dict[str, Any] | None = None) -> Iterator[None]:
    """Serve every shopper in this thread with ``version`` (None: the active one) and blend ``settings``.

    ``settings`` (``{"SIMILAR_BLEND": {...}}``) go over the serving defaults; running
    experiments are set aside. Nothing is saved: the owner's what-if replay
    (:mod:`recommendations.replay`) serves a candidate this way before it goes live.
    """
    before = getattr(_forced, "arm", None)
    _forced.arm = Arm(version=version, settings={**serving_settings(), **(settings or {})})
    try:
        yield
    finally:
        _forced.arm = before


def arm_for(widget: str, user=None, session_key: str | None = None) -> Arm:
    """The serving arm of ``widget`` for this shopper: defaults, or the experiment arm's overrides."""
    forced = getattr(_forced, "arm", None)
    if forced is not None:
        return forced
    defaults = Arm(settings=serving_settings())
    experiment, arm = assign(widget, user, session_key)
    if experiment is None:
        return defaults
    return replace(
        defaults,
        version=arm_version(experiment, arm),
        settings={**defaults.settings, **arm_settings(experiment, arm)},
        label=label(experiment, arm),
    )


# -- validation and life cycle --------------------------------------------------------------


def validate(experiment: Experiment) -> None:
    """Raise :class:`ExperimentError` unless the arms are two versions or two blend settings."""
    if len(experiment.name) > MAX_NAME_LENGTH:
        raise ExperimentError(f"the name must have at most {MAX_NAME_LENGTH} characters")
    if experiment.widget and experiment.widget not in WIDGETS:
        raise ExperimentError(f"experiments can change {' or '.join(WIDGETS)} (or every widget: blank)")
    if not 0 <= experiment.treatment_percent <= 100:
        raise ExperimentError("the treatment percentage must be between 0 and 100")
    versions = (experiment.control_version_id, experiment.treatment_version_id)
    settings = (experiment.control_settings or {}, experiment.treatment_settings or {})
    if any(versions) and any(settings):
        raise ExperimentError("compare either two model versions or two blend settings, not both")
    if any(versions):
        if not all(versions) or versions[0] == versions[1]:
            raise ExperimentError("choose two different model versions")
        return
    if not all(settings) or settings[0] == settings[1]:
        raise ExperimentError("give two different blend settings (or two model versions)")
    for arm_value in settings:
        validate_settings(arm_value)


def validate_settings(value: Any) -> None:
    """Raise :class:`ExperimentError` unless ``value`` is blend settings: ``{"SIMILAR_BLEND": {"visual": 0.5}}``."""
    if not isinstance(value, dict):
        raise ExperimentError('blend settings are a JSON object such as {"SIMILAR_BLEND": {"visual": 0.5}}')
    for name, weights in value.items():
        if name not in SETTING_WIDGETS:
            raise ExperimentError(f"unknown setting {name!r}; choose from {', '.join(SETTING_WIDGETS)}")
        if not isinstance(weights, dict) or not weights:
            raise ExperimentError(f"{name} must map sources to weights")
        known = set(getattr(visrec_settings, name))
        for source, weight in weights.items():
            if source not in known:
                raise ExperimentError(f"{name}: unknown source {source!r}; choose from {', '.join(sorted(known))}")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
                raise ExperimentError(f"{name}[{source!r}] must be a number from 0 to 100")


@transaction.atomic
def start(experiment: Experiment) -> Experiment:
    """Start a draft experiment (one running experiment per widget at a time)."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != Experiment.DRAFT:
        raise ExperimentError(f"only a draft can start; this one is {experiment.get_status_display().lower()}")
    validate(experiment)
    for other in Experiment.objects.filter(status=Experiment.RUNNING).exclude(pk=experiment.pk):
        if other.widget in ("", experiment.widget) or experiment.widget == "":
            raise ExperimentError(f"experiment {other.name!r} already runs on the same widget; end it first")
    experiment.status, experiment.started_at = Experiment.RUNNING, timezone.now()
    experiment.save(update_fields=["status", "started_at"])
    return experiment


@transaction.atomic
def end(experiment: Experiment, winner: str) -> Experiment:
    """End a running experiment and promote ``winner`` (``control``/``treatment``; ``""``: none).

    A version winner is activated; a settings winner becomes the serving default.
    """
    from .training import activate

    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != Experiment.RUNNING:
        raise ExperimentError("only a running experiment can end")
    if winner not in (CONTROL, TREATMENT, ""):
        raise ExperimentError("the winner is control, treatment or none")
    version = arm_version(experiment, winner) if winner else None
    if version is not None:
        activate(version)
    experiment.status, experiment.winner, experiment.ended_at = Experiment.ENDED, winner, timezone.now()
    experiment.save(update_fields=["status", "winner", "ended_at"])
    return experiment


# -- statistics -----------------------------------------------------------------------------

_Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default); ``(0, 0)`` with no trials."""
    if trials <= 0:
        return 0.0, 0.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float] | None:
    """Pooled two-proportion z-test of ``k2/n2`` vs ``k1/n1``: ``(z, two-sided p)``; None if undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (k2 / n2 - k1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def verdict(name: str, k1: int, n1: int, k2: int, n2: int, alpha: float = 0.05) -> str:
    """A plain-language reading of the test of ``name`` (treatment vs control)."""
    test = two_proportion_z(k1, n1, k2, n2)
    if test is None:
        return f"Not enough data to compare {name} yet."
    _, p = test
    if p >= alpha:
        return (
            f"No significant difference in {name} yet (p = {p:.3f}); "
            "keep the experiment running or treat the arms as equal."
        )
    better = TREATMENT if k2 / n2 > k1 / n1 else CONTROL
    return f"The {better} has a significantly higher {name} (p = {p:.3g}, 95 % confidence)."
