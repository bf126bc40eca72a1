"""Recurring runs of the KFP v2beta1 API (``/apis/v2beta1/recurringruns``), run by the server.

A recurring run has a trigger — ``periodic_schedule`` (``interval_second``) or ``cron_schedule``
(robfig/cron with a seconds field, ``"0 */5 * * * *"``; five fields mean second 0; descriptors
``@hourly`` ... and ``@every 30s``) — with optional ``start_time``/``end_time``, ``max_concurrency``
(1-10 runs at once) and ``no_catchup``. The times follow kubeflow/pipelines
``backend/src/crd/controller/scheduledworkflow/util/{periodic,cron}_schedule.go``: the next run is
due one interval (or the next cron time) after the later of creation, ``start_time`` and the last
scheduled run; when behind, catch-up starts every missed run in turn (as concurrency allows), and
``no_catchup`` starts only the latest missed one. Times are UTC.

:class:`RecurringScheduler` is a thread of the API server, alive while some recurring run is
enabled; each due run is created as any KFP run is (:meth:`localflow.apiserver.kfp.KfpApi.create_run`),
so the server's workers run it.
"""
from __future__ import annotations

import datetime as _dt
import sqlite3
import threading
import time

from localflow.apiserver.kfpshapes import KfpError, list_page, rfc3339

__all__ = ["parse_cron", "next_cron", "next_due", "check_trigger", "recurring_json", "RecurringScheduler",
           "RECURRING_ANNOTATION"]

RECURRING_ANNOTATION = "localflow.dev/kfp-recurring-run-id"
SCHEDULED_ANNOTATION = "localflow.dev/kfp-scheduled-at"
_NAMES = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
          "nov": 11, "dec": 12, "sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_DESCRIPTORS = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
                "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *"}
_FIELD = "recurring_run.trigger.cron_schedule.cron"


def _value(text: str, lo: int, hi: int, expr: str) -> int:
    v = _NAMES.get(text.lower()) if not text.isdigit() else int(text)
    if v == 7 and hi == 6:
        v = 0  # Sunday as 7
    if v is None or not lo <= v <= hi:
        raise KfpError(400, f"{_FIELD}: {text!r} in {expr!r} is not in {lo}-{hi}")
    return v


def parse_cron(expr: str):
    """``(seconds, minutes, hours, days, months, weekdays, dom_any, dow_any)`` sets of a cron
    expression, or ``("every", seconds)`` for ``@every``; KfpError naming the bad part."""
    if not isinstance(expr, str) or not expr.strip():
        raise KfpError(400, f"{_FIELD}: required (e.g. '0 0 * * * *': every hour)")
    expr = expr.strip()
    if expr.startswith("@every"):
        import re

        m = re.fullmatch(r"@every\s+((?:\d+h)?(?:\d+m)?(?:\d+s)?)", expr)
        if not m or not m.group(1):
            raise KfpError(400, f"{_FIELD}: {expr!r}; write '@every 1h30m' or '@every 45s'")
        parts = dict((u, int(n)) for n, u in re.findall(r"(\d+)([hms])", m.group(1)))
        secs = parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
        if secs < 1:
            raise KfpError(400, f"{_FIELD}: {expr!r} is not a positive duration")
        return ("every", secs)
    fields = _DESCRIPTORS.get(expr.lower(), expr).split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise KfpError(400, f"{_FIELD}: {expr!r} has {len(fields)} fields; write 6 (second minute hour "
                            "day-of-month month day-of-week) or 5")
    sets = []
    for f, (lo, hi) in zip(fields, _RANGES):
        chosen: set[int] = set()
        for item in f.split(","):
            rng, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) < 1):
                raise KfpError(400, f"{_FIELD}: step {step!r} in {expr!r} is not a positive integer")
            if rng in ("*", "?"):
                a, b = lo, hi
            elif "-" in rng:
                x, _, y = rng.partition("-")
                a, b = _value(x, lo, hi, expr), _value(y, lo, hi, expr)
            else:
                a = _value(rng, lo, hi, expr)
                b = hi if step else a
            chosen.update(range(a, b + 1, int(step) if step else 1))
        sets.append(chosen)
    return (*sets, fields[3] in ("*", "?"), fields[5] in ("*", "?"))


def next_cron(spec, after: float) -> float | None:
    """The first time strictly after ``after`` (epoch seconds) that ``spec`` (:func:`parse_cron`)
    matches, within five years; None when there is none."""
    if spec[0] == "every":
        return float(int(after) + spec[1])
    secs, mins, hours, days, months, dows, dom_any, dow_any = spec
    t = _dt.datetime.fromtimestamp(int(after) + 1, _dt.timezone.utc)
    end = t + _dt.timedelta(days=5 * 366)

    def day_ok(d: _dt.datetime) -> bool:
        dom, dow = d.day in days, (d.isoweekday() % 7) in dows
        return (dom and dow) if (dom_any or dow_any) else (dom or dow)

    while t < end:
        if t.month not in months:
            t = (t.replace(day=1, hour=0, minute=0, second=0) + _dt.timedelta(days=32)).replace(day=1)
        elif not day_ok(t):
            t = t.replace(hour=0, minute=0, second=0) + _dt.timedelta(days=1)
        elif t.hour not in hours:
            t = t.replace(minute=0, second=0) + _dt.timedelta(hours=1)
        elif t.minute not in mins:
            t = t.replace(second=0) + _dt.timedelta(minutes=1)
        elif t.second not in secs:
            later = sorted(s for s in secs if s > t.second)
            t = t.replace(second=later[0]) if later else t.replace(second=0) + _dt.timedelta(minutes=1)
        else:
            return t.timestamp()
    return None


def _epoch(text, field: str) -> float | None:
    if text in (None, ""):
        return None
    try:
        return _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise KfpError(400, f"{field}: {text!r} is not an RFC 3339 time (2026-01-02T15:04:05Z)") from None


def check_trigger(body: dict) -> None:
    """Refuse a recurring run whose trigger, ``max_concurrency`` or ``mode`` is not valid (400)."""
    trig = body.get("trigger")
    if not isinstance(trig, dict) or bool(trig.get("cron_schedule")) == bool(trig.get("periodic_schedule")):
        raise KfpError(400, "recurring_run.trigger: set exactly one of cron_schedule {cron} or "
                            "periodic_schedule {interval_second}")
    if trig.get("cron_schedule"):
        parse_cron(trig["cron_schedule"].get("cron"))
        sched, name = trig["cron_schedule"], "cron_schedule"
    else:
        sched, name = trig["periodic_schedule"], "periodic_schedule"
        try:
            ok = int(sched.get("interval_second") or 0) >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise KfpError(400, f"recurring_run.trigger.periodic_schedule.interval_second: "
                                f"{sched.get('interval_second')!r}; give a whole number of seconds >= 1")
    start = _epoch(sched.get("start_time"), f"recurring_run.trigger.{name}.start_time")
    end = _epoch(sched.get("end_time"), f"recurring_run.trigger.{name}.end_time")
    if start is not None and end is not None and end < start:
        raise KfpError(400, f"recurring_run.trigger.{name}.end_time: before start_time")
    try:
        mc = int(body.get("max_concurrency") or 1)
    except (TypeError, ValueError):
        mc = 0
    if not 1 <= mc <= 10:  # backend/src/apiserver/server/recurring_run_server.go: [1, 10]
        raise KfpError(400, f"recurring_run.max_concurrency: {body.get('max_concurrency')!r}; give 1 to 10")
    if body.get("mode") not in (None, "", "ENABLE", "DISABLE", "MODE_UNSPECIFIED"):
        raise KfpError(400, f"recurring_run.mode: {body.get('mode')!r}; use ENABLE or DISABLE")


def next_due(rr: dict, now: float) -> float | None:
    """When recurring run ``rr`` (a :class:`KfpStore` row) next starts a run; None once past its end."""
    trig = rr["body"]["trigger"]
    cron = trig.get("cron_schedule")
    sched = cron or trig["periodic_schedule"]
    start = max(rr["created_ts"], _epoch(sched.get("start_time"), "start_time") or 0)
    base = rr["last_ts"] if rr.get("last_ts") and rr["last_ts"] > start else start
    end = _epoch(sched.get("end_time"), "end_time")
    catchup = not rr["body"].get("no_catchup")
    if cron:
        spec = parse_cron(cron["cron"])
        due = next_cron(spec, base)
        if due is not None and due <= now and not catchup:
            for _ in range(100000):  # the latest missed time only
                after = next_cron(spec, due)
                if after is None or after > now:
                    break
                due = after
    else:
        step = int(sched["interval_second"])
        due = base + step
        if due <= now and not catchup:
            due = base + int((now - base) // step) * step
    if due is None or (end is not None and due > end):
        return None
    return due


def recurring_json(rr: dict) -> dict:
    """A V2beta1RecurringRun."""
    b = rr["body"]
    out = {k: b[k] for k in ("display_name", "description", "pipeline_spec", "pipeline_version_reference",
                             "runtime_config", "service_account", "trigger", "no_catchup", "namespace",
                             "experiment_id") if b.get(k) not in (None, "")}
    out.update(recurring_run_id=rr["id"], max_concurrency=str(int(b.get("max_concurrency") or 1)),
               mode="ENABLE" if rr["enabled"] else "DISABLE", status="ENABLED" if rr["enabled"] else "DISABLED",
               created_at=rfc3339(rr["created_ts"]), updated_at=rfc3339(rr["updated_ts"]))
    return out


def handle(api, m: str, rest: list[str], q, body):
    """``/apis/v2beta1/recurringruns[/ID[:enable|:disable]]`` for :class:`~localflow.apiserver.kfp.KfpApi` ``api``."""
    kfp = api.kfp
    if not rest:
        if m == "POST":
            if not isinstance(body, dict):
                raise KfpError(400, "recurring_run: expected a JSON object")
            if not (body.get("display_name") or "").strip():
                raise KfpError(400, "recurring_run.display_name: required (a non-empty string)")
            check_trigger(body)
            api.prepare_run(body, field="recurring_run")  # the spec and parameters checked now, not at the first run
            body = {**body, "experiment_id": body.get("experiment_id") or kfp.default_experiment()["id"]}
            rr = kfp.create_recurring_run(body, enabled=body.get("mode") != "DISABLE")
            api.scheduler.poke()
            return recurring_json(rr)
        if m == "GET":
            items = [recurring_json(r) for r in kfp.recurring_runs()]
            if q.get("experiment_id"):
                items = [i for i in items if i.get("experiment_id") == q["experiment_id"]]
            page, total, nxt = list_page(items, q, id_key="recurring_run_id", what="recurring runs")
            return {"recurringRuns": page, "total_size": total, "next_page_token": nxt}
        raise KfpError(405, f"{m} is not allowed on recurringruns")
    rid, _, action = rest[0].partition(":")
    rr = kfp.recurring_run(rid)
    if rr is None:
        raise KfpError(404, f"recurring_run_id: no recurring run {rid!r}; list them with list_recurring_runs()")
    if m == "POST" and action in ("enable", "disable"):
        kfp.set_recurring_enabled(rid, action == "enable")
        api.scheduler.poke()
        return {}
    if m == "GET" and not action:
        return recurring_json(rr)
    if m == "DELETE" and not action:
        kfp.delete_recurring_run(rid)
        return {}
    raise KfpError(405, f"{m} is not allowed on recurringruns/{rest[0]}")


class RecurringScheduler:
    """Starts the due runs of enabled recurring runs: a daemon thread while some are enabled,
    woken by :meth:`poke` on a change and otherwise at the next due time (at least every second).
    It ends when none is enabled or when the server's store is closed."""

    def __init__(self, api):
        self.api = api
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Look at the recurring runs now (starting the thread when it is not running)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="localflow-kfp-recurring", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = self.tick(time.time())
            except sqlite3.ProgrammingError:  # the server closed its store: it is stopping
                return
            except Exception as exc:  # noqa: BLE001 - one bad recurring run must not stop the others
                print(f"localflow: recurring runs: {exc}", flush=True)
                delay = 1.0
            if delay is None:
                with self._lock:
                    if not self._wake.is_set():
                        self._thread = None
                        return
                continue
            self._wake.wait(min(delay, 1.0))

    def tick(self, now: float) -> float | None:
        """Start what is due at ``now``; seconds until the next check (None: nothing enabled)."""
        rrs = self.api.kfp.recurring_runs(enabled_only=True)
        if not rrs:
            return None
        wait = 1.0
        active: dict[str, int] = {}
        for obj in self.api.store.list("Run", None):
            owner = (obj["metadata"].get("annotations") or {}).get(RECURRING_ANNOTATION)
            if owner and (obj.get("status") or {}).get("state") in ("PENDING", "RUNNING", None):
                active[owner] = active.get(owner, 0) + 1
        for rr in rrs:
            due = next_due(rr, now)
            if due is None:
                continue
            if due > now:
                wait = min(wait, due - now)
                continue
            if active.get(rr["id"], 0) >= int(rr["body"].get("max_concurrency") or 1):
                continue  # a run finishing wakes nothing here: the next tick (<= 1 s) looks again
            b = rr["body"]
            run = {k: b.get(k) for k in ("pipeline_spec", "pipeline_version_reference", "runtime_config",
                                         "service_account", "experiment_id", "description")}
            run["display_name"] = f"{b['display_name']} {rfc3339(due)}"
            try:
                self.api.create_run(run, extra={RECURRING_ANNOTATION: rr["id"], SCHEDULED_ANNOTATION: rfc3339(due)})
            except KfpError as exc:  # e.g. its pipeline version was deleted: disable it, say why
                self.api.kfp.set_recurring_enabled(rr["id"], False)
                print(f"localflow: recurring run {rr['id']} disabled: {exc.message}", flush=True)
                continue
            self.api.kfp.set_recurring_last(rr["id"], due)
            active[rr["id"]] = active.get(rr["id"], 0) + 1
            wait = 0.0
        return wait
