"""The fault schedule of the drills and the shop owner who acts during it.

A :class:`FaultPlan` places five faults after a fault-free warm-up, evenly over the load:
Redis killed (SIGKILL) and restarted, PostgreSQL stopped (``pg_ctl stop -m fast``) and
started, the Celery worker SIGKILLed in the middle of an embedding batch (the owner's
bulk import of new products starts it) and again in the middle of a training run (the
owner's "Retrain now"), each restarted after a pause, and the store (media, artifacts,
temporary files) filled to the last byte while the owner imports, retrains and
re-embeds. Each :class:`Fault` records when it began and ended (``perf_counter``), what
the owner's requests got and what the drill saw at the moment it struck.

The owner is a staff user in the admin (``Owner``): a cookie-keeping HTTP client that
logs in, posts the bulk-import form and the dashboard's buttons with a CSRF token, as a
browser would.
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import secrets
import threading
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np
from _drill_load import jpeg, multipart
from _drill_stack import wait_for

log = logging.getLogger("visrec.drills.faults")
RUNS = "/admin/recommendations/taskrun/"
DASHBOARD = "/admin/recommendations/modelversion/dashboard/"
IMPORT = "/admin/catalog/product/import/"


@dataclass
class OwnerCall:
    """One admin request of the owner: when (``perf_counter``), what, the status and a detail."""

    at: float
    action: str
    status: int
    detail: str = ""
    seconds: float = 0.0


class Owner:
    """A staff user in the admin, over plain HTTP (cookies and CSRF handled here)."""

    def __init__(self, port: int, username: str, password: str, timeout: float = 30.0) -> None:
        self.port, self.username, self.password, self.timeout = port, username, password, timeout
        self.host = f"127.0.0.1:{port}"
        self.cookies: dict[str, str] = {"csrftoken": secrets.token_hex(16)}
        self.calls: list[OwnerCall] = []

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """One request; ``(status, headers, body)``, keeping the cookies it sets (never following redirects)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=self._headers(headers or {}))
            response = conn.getresponse()
            data = response.read()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            return response.status, dict(response.getheaders()), data
        finally:
            conn.close()

    def _headers(self, extra: dict) -> dict:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return {
            "Host": self.host,
            "Cookie": cookie,
            "Referer": f"https://{self.host}/admin/",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "192.0.2.10",
            **extra,
        }

    def post_form(self, action: str, path: str, fields: dict, files: dict | None = None) -> OwnerCall:
        """Post a form (CSRF token added); the call, recorded. A connection failure is status 0."""
        body, content_type = multipart({"csrfmiddlewaretoken": self.cookies["csrftoken"], **fields}, files or {})
        started = time.perf_counter()
        try:
            status, headers, data = self.request("POST", path, body, {"Content-Type": content_type})
            detail = headers.get("Location", "") or _text(data)
        except (OSError, http.client.HTTPException) as e:
            status, detail = 0, f"{type(e).__name__}: {e}"
        call = OwnerCall(started, action, status, detail[:300], time.perf_counter() - started)
        self.calls.append(call)
        return call

    def login(self) -> None:
        self.request("GET", "/admin/login/")
        call = self.post_form(
            "login", "/admin/login/?next=/admin/", {"username": self.username, "password": self.password}
        )
        if call.status != 302:
            raise RuntimeError(f"admin login failed: {call.status} {call.detail}")

    def import_products(self, csv_bytes: bytes, zip_bytes: bytes) -> OwnerCall:
        files = {
            "products": ("products.csv", csv_bytes, "text/csv"),
            "images": ("images.zip", zip_bytes, "application/zip"),
        }
        return self.post_form("bulk import", IMPORT, {"preset": "", "columns": ""}, files)

    def retrain(self) -> OwnerCall:
        return self.post_form("retrain now", DASHBOARD + "retrain/", {})

    def reembed(self) -> OwnerCall:
        return self.post_form("re-embed missing/failed", DASHBOARD + "reembed/", {})


def _text(data: bytes) -> str:
    """The readable part of an HTML answer (an error message, a form's errors)."""
    text = re.sub(r"<[^>]+>", " ", data.decode("utf-8", "replace"))
    return re.sub(r"\s+", " ", text).strip()


def run_id(call: OwnerCall) -> int | None:
    """The TaskRun a bulk-import POST redirected to."""
    found = re.search(rf"{RUNS}(\d+)/", call.detail)
    return int(found.group(1)) if found else None


def new_products(prefix: str, count: int, seed: int) -> tuple[bytes, bytes]:
    """A products CSV and a ZIP of one distinct JPEG per product (SKUs ``<prefix>-<n>``)."""
    rng = np.random.default_rng(seed)
    rows = ["sku,title,category,price,stock,image"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for n in range(count):
            name = f"{prefix}-{n}.jpg"
            z.writestr(name, jpeg(rng, size=224))
            rows.append(f"{prefix}-{n},Drill item {n},Drill arrivals,{10 + n % 50}.90,10,{name}")
    return ("\n".join(rows) + "\n").encode(), archive.getvalue()


@dataclass
class Fault:
    """One fault: its name, when it struck and ended (``perf_counter``), what it found and did."""

    name: str
    offset: float  # planned start, seconds after the load's start
    hold: float  # how long it lasts once struck
    begun: float = 0.0  # when the drill began acting on it (the owner's trigger, before it strikes)
    start: float = 0.0
    end: float = 0.0
    pg_down: bool = False
    skipped: str = ""
    facts: dict = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)  # what the owner started -> TaskRun id

    @property
    def happened(self) -> bool:
        return bool(self.start and self.end)


class FaultPlan:
    """The drill's five faults over ``duration`` seconds of load, after ``warmup`` fault-free seconds.

    Each fault gets an equal slot; it strikes at the slot's start (the worker faults once
    the work they interrupt is under way) and lasts ``hold`` seconds, so the rest of the
    slot shows the recovery. The last 10 % of the load is fault-free as well.
    """

    NAMES = ("redis", "postgres", "worker_embedding", "worker_training", "disk_full")

    def __init__(self, duration: float, names: tuple[str, ...] = NAMES) -> None:
        unknown = set(names) - set(self.NAMES)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(self.NAMES)}")
        self.warmup = min(60.0, 0.2 * duration)
        tail = 0.1 * duration
        slot = (duration - self.warmup - tail) / max(len(names), 1)
        hold = min(20.0, max(5.0, 0.3 * slot))
        holds = {"worker_embedding": 5.0, "worker_training": 5.0, "disk_full": min(30.0, max(8.0, 0.4 * slot))}
        self.slot = slot
        ordered = [name for name in self.NAMES if name in names]
        self.faults = [Fault(name, self.warmup + n * slot, holds.get(name, hold)) for n, name in enumerate(ordered)]


class FaultRunner(threading.Thread):
    """Runs a :class:`FaultPlan` against a stack while the load runs (one thread)."""

    def __init__(self, plan: FaultPlan, stack, owner: Owner, db, seed: int = 0) -> None:
        super().__init__(daemon=True, name="faults")
        self.plan, self.stack, self.owner, self.db, self.seed = plan, stack, owner, db, seed
        self.t0: float | None = None
        self.stopping = threading.Event()
        self.killed_batch = ""  # SKU prefix of the products whose embedding the worker died in

    def run(self) -> None:
        while self.t0 is None and not self.stopping.wait(0.05):
            pass
        for fault in self.plan.faults:
            if not self._sleep_until(self.t0 + fault.offset):
                return
            log.info("fault %s", fault.name)
            fault.begun = time.perf_counter()
            try:
                getattr(self, f"_{fault.name}")(fault)
            except Exception as e:  # the drill goes on; the fault's report says what broke
                log.exception("fault %s could not be run", fault.name)
                fault.facts["error"] = f"{type(e).__name__}: {e}"
                fault.end = fault.end or (time.perf_counter() if fault.start else 0.0)

    def _sleep_until(self, when: float) -> bool:
        return not self.stopping.wait(max(0.0, when - time.perf_counter()))

    def _hold(self, fault: Fault) -> None:
        self._sleep_until(fault.start + fault.hold)

    # -- the faults -------------------------------------------------------------------------
    def _redis(self, fault: Fault) -> None:
        fault.start = time.perf_counter()
        self.stack.redis.kill()
        self._hold(fault)
        self.stack.redis.start()
        fault.end = time.perf_counter()

    def _postgres(self, fault: Fault) -> None:
        fault.pg_down = True
        fault.start = time.perf_counter()
        self.stack.pg.stop("fast")
        fault.facts["stop_s"] = round(time.perf_counter() - fault.start, 2)
        self._hold(fault)
        self.stack.pg.start()
        fault.end = time.perf_counter()

    def _worker_embedding(self, fault: Fault) -> None:
        """The owner imports new products; the worker dies while it embeds their images."""
        prefix = f"drill-new-{self.seed}"
        count = int(self.db.embed_batch_size() * 8)
        csv_bytes, zip_bytes = new_products(prefix, count, self.seed)
        call = self.owner.import_products(csv_bytes, zip_bytes)
        fault.runs["bulk import"] = run_id(call)
        fault.facts["import"] = call.status
        deadline = time.perf_counter() + 0.8 * self.plan.slot
        while time.perf_counter() < deadline and not self.stopping.is_set():
            ready, pending = self.db.image_states(prefix)
            if ready and pending:
                break
            time.sleep(0.1)
        else:
            fault.skipped = "the embedding of the imported images was not seen under way"
        ready, pending = self.db.image_states(prefix)
        fault.facts["images"] = count
        fault.facts["embedded_at_kill"] = ready
        self._kill_and_restart(fault)
        self.killed_batch = prefix
        fault.facts["prefix"] = prefix

    def _worker_training(self, fault: Fault) -> None:
        """The owner clicks "Retrain now"; the worker dies while the run is running."""
        self._note_killed_batch(fault)
        since = self.db.now()
        call = self.owner.retrain()
        fault.facts["retrain"] = call.status
        run = self._await_run("train", since, ("running",), 0.8 * self.plan.slot)
        fault.runs["retrain"] = run
        if run is None or self.db.run_status(run) != "running":
            fault.skipped = "the training run was not seen running"
        time.sleep(0.5)  # into the run, past "reading interactions"
        fault.facts["status_at_kill"] = self.db.run_status(run) if run else None
        self._kill_and_restart(fault)

    def _kill_and_restart(self, fault: Fault) -> None:
        """SIGKILL the worker, start a new one after ``hold`` s; the fault ends then (its start-up is noted)."""
        fault.start = time.perf_counter()
        self.stack.kill_worker()
        self._hold(fault)
        self.stack.start_worker()
        fault.end = time.perf_counter()
        try:
            waited = wait_for(self._worker_back, 180, 0.5, what="the restarted worker ready")
            fault.facts["worker_ready_s"] = round(waited, 1)
        except TimeoutError:
            fault.facts["worker_ready_s"] = "not ready in 180 s"

    def _disk_full(self, fault: Fault) -> None:
        """Fill the store; meanwhile the owner imports, retrains and re-embeds."""
        if not self.stack.store.mounted:
            fault.skipped = "no size-limited store (tmpfs needs root)"
            return
        self._note_killed_batch(fault)
        fault.start = time.perf_counter()
        fault.facts["filled_mb"] = round(self.stack.store.fill() / 2**20, 1)
        csv_bytes, zip_bytes = new_products(f"drill-full-{self.seed}", 20, self.seed + 1)
        for name, act in (
            ("bulk import", lambda: self.owner.import_products(csv_bytes, zip_bytes)),
            ("retrain", self.owner.retrain),
            ("re-embed", self.owner.reembed),
        ):
            since = self.db.now()
            call = act()
            fault.facts[name] = call.status
            kind = {"bulk import": "import", "retrain": "train", "re-embed": "embed"}[name]
            fault.runs[name] = run_id(call) or self._await_run(kind, since, None, 5.0)
        self._hold(fault)
        # The store stays full until the owner's runs have ended (up to most of the slot),
        # so they meet the full disk rather than a freed one.
        deadline = fault.start + max(fault.hold, 0.7 * self.plan.slot)
        while time.perf_counter() < deadline and not self.stopping.is_set():
            if all(self.db.run_status(pk) not in ("queued", "running") for pk in fault.runs.values() if pk):
                break
            time.sleep(0.5)
        for name, pk in fault.runs.items():
            fault.facts[f"{name} run"] = self.db.run_status(pk) if pk else None
        self.stack.store.free()
        fault.end = time.perf_counter()

    def _worker_back(self) -> bool:
        return self.stopping.is_set() or self.stack.worker_ready()

    def _note_killed_batch(self, fault: Fault) -> None:
        """How many images of the batch the worker died on are still pending (before the owner acts again)."""
        if self.killed_batch:
            fault.facts["killed_batch_pending"] = self.db.image_states(self.killed_batch)[1]

    def _await_run(self, kind: str, since, statuses: tuple[str, ...] | None, timeout: float) -> int | None:
        """The first TaskRun of ``kind`` created after ``since`` (in one of ``statuses``, if given)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and not self.stopping.is_set():
            found = self.db.run_since(kind, since, statuses)
            if found is not None:
                return found
            time.sleep(0.1)
        return self.db.run_since(kind, since, None)
