"""The benchmark's figures: medians over the runs, ratios, targets, and the Markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Any

STALL_MS = 2.0  # the idle process woke this late: the machine held it up (its p99 is ~0.8 ms)

SERVERS = ("ours", "usual")


def _median(values: list[float]) -> float:
    values = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def _runs(results: dict[str, Any], kind: str, label: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = results["figures"].get(kind, {}).get(label, [])
    return runs


def _med(results: dict[str, Any], kind: str, label: str, key: str) -> float:
    return _median([run[key] for run in _runs(results, kind, label)])


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: ours, usual, ratio, target, met (None: no target)."""
    rows: list[dict[str, Any]] = []

    def row(
        figure: str,
        ours: Any,
        usual: Any = None,
        ratio: float | None = None,
        target: str = "",
        met: bool | None = None,
        unit: str = "",
    ) -> None:
        rows.append(
            {
                "figure": figure,
                "ours": ours,
                "usual": usual,
                "ratio": ratio,
                "target": target,
                "met": met,
                "unit": unit,
            }
        )

    rps = {
        kind: {label: _med(results, kind, label, "rps") for label in SERVERS}
        for kind in ("root", "enqueue", "status")
    }
    row(
        "trivial `GET /` throughput",
        rps["root"]["ours"],
        rps["root"]["usual"],
        _ratio(rps["root"]["ours"], rps["root"]["usual"]),
        "(reference)",
        unit="req/s",
    )
    ratio = _ratio(rps["enqueue"]["ours"], rps["enqueue"]["usual"])
    row(
        "enqueue `POST /api/process` throughput",
        rps["enqueue"]["ours"],
        rps["enqueue"]["usual"],
        ratio,
        "≥ 2x usual",
        ratio >= 2,
        unit="req/s",
    )
    own = {label: _ratio(rps["enqueue"][label], rps["root"][label]) for label in SERVERS}
    row(
        "enqueue ÷ the same server's `GET /`",
        own["ours"],
        own["usual"],
        None,
        "≥ 0.35",
        own["ours"] >= 0.35,
    )
    ratio = _ratio(rps["status"]["ours"], rps["status"]["usual"])
    row(
        "status `GET /api/task/{id}` throughput",
        rps["status"]["ours"],
        rps["status"]["usual"],
        ratio,
        "≥ 1.5x usual",
        ratio >= 1.5,
        unit="req/s",
    )

    p50 = {label: _med(results, "latency", label, "p50_ms") for label in SERVERS}
    p99 = {label: _med(results, "latency", label, "p99_ms") for label in SERVERS}
    row(
        "no-op task, submit → final SSE event, p50",
        p50["ours"],
        p50["usual"],
        _ratio(p50["usual"], p50["ours"]),
        "≤ 10 ms",
        p50["ours"] <= 10,
        unit="ms",
    )
    row(
        "no-op task, submit → final SSE event, p99",
        p99["ours"],
        p99["usual"],
        _ratio(p99["usual"], p99["ours"]),
        "",
        unit="ms",
    )

    fanout: dict[str, dict[str, list[dict[str, Any]]]] = results["figures"].get("fanout", {})
    counts = sorted(fanout, key=int)
    if counts:
        largest = counts[-1]

        def delivered(label: str) -> str:
            runs = fanout[largest][label]
            got = sum(r["updates_delivered"] for r in runs)
            expected = sum(r["updates_expected"] for r in runs)
            return f"{100 * got / expected:.1f} % ({got:,}/{expected:,})" if expected else "-"

        every = all(
            r["updates_delivered"] == r["updates_expected"] for r in fanout[largest]["ours"]
        )
        row(
            f"SSE fan-out, {largest} streams: progress updates delivered",
            delivered("ours"),
            delivered("usual"),
            None,
            "every stream gets every update",
            every,
        )
        d99 = {
            label: _median([r["delivery_p99_ms"] for r in fanout[largest][label]])
            for label in SERVERS
        }
        row(
            f"SSE fan-out, {largest} streams: delivery p99 (publish → client)",
            d99["ours"],
            d99["usual"],
            None,
            "≤ 100 ms",
            d99["ours"] <= 100,
            unit="ms",
        )
        per_update = {
            n: {
                label: _median([r["redis_commands_per_update"] for r in fanout[n][label]])
                for label in SERVERS
            }
            for n in counts
        }
        for n in counts:
            flat = None
            if n == largest and len(counts) > 1:
                # "Does not grow": at most 20 % more per update than at the smallest count.
                flat = per_update[n]["ours"] <= 1.2 * per_update[counts[0]]["ours"]
            row(
                f"Redis commands per update, {n} streams",
                per_update[n]["ours"],
                per_update[n]["usual"],
                None,
                "does not grow with streams" if flat is not None else "",
                flat,
            )

    lag = {label: _med(results, "root", label, "loop_lag_max_ms") for label in SERVERS}
    row(
        "event-loop lag, max during the trivial `GET /` load",
        lag["ours"],
        lag["usual"],
        None,
        "(reference)",
        unit="ms",
    )
    for kind, what in (("enqueue", "enqueue"), ("status", "status")):
        lag = {
            label: _med(results, kind, label, "loop_lag_max_outside_stalls_ms") for label in SERVERS
        }
        row(
            f"event-loop lag, max during the {what} load, outside the machine's stalls",
            lag["ours"],
            lag["usual"],
            None,
            "≤ 5 ms",
            lag["ours"] <= 5,
            unit="ms",
        )
        lag = {label: _med(results, kind, label, "loop_lag_max_ms") for label in SERVERS}
        row(
            f"event-loop lag, max during the {what} load, every sample",
            lag["ours"],
            lag["usual"],
            None,
            "(stalls included)",
            unit="ms",
        )
        p99 = {label: _med(results, kind, label, "loop_lag_p99_ms") for label in SERVERS}
        row(f"event-loop lag, p99 during the {what} load", p99["ours"], p99["usual"], unit="ms")
        idle = {label: _med(results, kind, label, "idle_lag_max_ms") for label in SERVERS}
        row(
            f"lag max of an idle process beside the {what} load",
            idle["ours"],
            idle["usual"],
            None,
            "(the machine's share)",
            unit="ms",
        )
        probe = {label: _med(results, kind, label, "probe_max_ms") for label in SERVERS}
        row(
            f"probe `GET /` latency, max during the {what} load",
            probe["ours"],
            probe["usual"],
            None,
            "(outside view)",
            unit="ms",
        )

    render = results["figures"].get("render", {})
    if render:
        head = _median(render["from_git_head_s"])
        row(
            "render one variant (Copier, from git HEAD)",
            head,
            None,
            None,
            "≤ 2 s",
            head <= 2,
            unit="s",
        )
    fresh = results["figures"].get("fresh_to_green", {})
    if "total_s" in fresh:
        row(
            "fresh render → green tests (render + `uv sync` + pytest, warm cache)",
            fresh["total_s"],
            None,
            None,
            "≤ 60 s",
            fresh["total_s"] <= 60,
            unit="s",
        )
    return rows


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if unit == "req/s" or (unit == "" and value >= 100):
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    return f"{value:.2f}"


def _revision(results: dict[str, Any]) -> str:
    revision = results.get("template", {})
    commit = revision.get("commit") or "?"
    return f"{commit} with uncommitted template changes" if revision.get("dirty") else commit


def _load(machine: dict[str, Any]) -> str:
    start = machine.get("load_average_at_start") or [float("nan")]
    end = machine.get("load_average_at_end") or [float("nan")]
    return f"{start[0]:.1f} at the start, {end[0]:.1f} at the end (1 min)"


def _cpu_probe(machine: dict[str, Any]) -> str:
    start = machine.get("cpu_probe_seconds_at_start", float("nan"))
    end = machine.get("cpu_probe_seconds_at_end", float("nan"))
    return (
        f"CPU probe (a 5-million-step Python loop, lower is faster) {start:.2f} s at the start, "
        f"{end:.2f} s at the end"
    )


def markdown(results: dict[str, Any]) -> str:
    profile = results["profile"]
    machine = results["machine"]
    servers = results.get("servers", {})
    stack = servers.get("ours", {})
    lines = [
        f"## Benchmark results ({profile['name']} run, {results['started']})",
        "",
        f"Template at commit {_revision(results)}.",
        "",
        f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory']}; "
        f"{machine['os']}. Redis {results.get('redis', {}).get('version', '?')} on loopback"
        f"{' (a private redis-server)' if results.get('redis', {}).get('private') else ''}; "
        f"{machine['wrk']}; load average {_load(machine)}; {_cpu_probe(machine)}; "
        f"service on {results.get('service_python', '?')}, "
        f"uvicorn with {stack.get('loop', '?')} and {stack.get('http', '?')} (both apps).",
        "",
        "| figure | ours | usual pattern | ours ÷ usual | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in results.get("summary", []):
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        ratio = "" if row["ratio"] is None else f"{_fmt(row['ratio'])}x"
        lines.append(
            f"| {row['figure']} | {_fmt(row['ours'], row['unit'])} | "
            f"{_fmt(row['usual'], row['unit'])} | {ratio} | {row['target']} | {met} |"
        )
    lines += ["", *_method(results), ""]
    if results.get("problems"):
        lines += ["Problems:", *(f"- {p}" for p in results["problems"]), ""]
    return "\n".join(lines)


def _method(results: dict[str, Any]) -> list[str]:
    p = results["profile"]
    figures = results["figures"]
    fresh = figures.get("fresh_to_green", {})
    lines = [
        f"Medians of {p.get('http_reps', p['reps'])} throughput runs and {p['reps']} latency "
        "runs per app, in turn (ours, usual, ours, usual, ...). One "
        "uvicorn process per app (no access log), one Celery worker "
        f"(prefork, concurrency {p['worker_concurrency']}), both apps on the same broker and "
        "result backend. The usual pattern is `bench/apps/usual_app.py`: the guide's code "
        "(blocking `delay()`/`AsyncResult` in `async def`, SSE polling every second), with "
        "the service's own Celery app and tasks.",
        f"- Throughput: `wrk -t1 -c{p['wrk_connections']} -d{p['wrk_seconds']}s` (POST body "
        "from a Lua script; status reads go round 100 finished tasks' ids), no worker "
        "running (queued tasks are purged after each run). Every response must be 2xx.",
        "- Event-loop lag: inside each API process, a task sleeps 2 ms in a loop and records "
        "how late it wakes (`bench/apps/lagwrap.py`, an ASGI pass-through around both apps); "
        "the idle process runs the same monitor (`bench/apps/lagmonitor.py`) and serves "
        "nothing, beside the load: its lag is what the machine adds (other processes on the "
        f"two CPUs, the hypervisor). A stall is an idle-process wake-up more than {STALL_MS:g} ms "
        "late (its p99 is under 1 ms): the target rows leave out the API's samples whose sleep "
        "overlapped one, as the machine held both processes up then; the rows with every "
        "sample stand beside them. The probe row is the outside view: sequential `GET /` "
        "requests every 10 ms during the load (an upper bound that includes queueing behind "
        "wrk's connections).",
        f"- Latency: {p['latency_samples']['ours']} (ours) / {p['latency_samples']['usual']} "
        "(usual) sequential no-op tasks per run (`POST /api/process` with `{}`, then the "
        "task's SSE stream until its final event); POST with httpx, streams read with a lean "
        "asyncio HTTP/1.1 reader (`clients.read_stream`).",
        "- Fan-out: N streams (the lean reader, one asyncio process) over "
        f"{p['fanout_tasks']} report tasks of {p['report_steps']} progress updates "
        f"({p['step_delay']} s apart), all "
        "streams open before the worker starts. Delivery time = arrival at the client minus the "
        "PUBLISH seen by a separate pub/sub observer process. Redis commands: `INFO "
        "commandstats` before the worker starts and after the last stream ends, whole "
        "server (broker + results, worker start-up included), divided by the number of "
        "updates published.",
    ]
    if "total_s" in fresh:
        lines.append(
            f"- Fresh render → green: render {fresh['render_s']:.2f} s + `uv sync` "
            f"{fresh['uv_sync_s']:.2f} s + pytest {fresh['pytest_s']:.2f} s "
            f"({fresh['pytest_summary']}, Redis integration tests included)."
        )
    render = figures.get("render", {})
    if render:
        folder = _median(render["from_folder_s"])
        lines.append(
            f"- Render: in-process `copier.run_copy`, median of {len(render['from_git_head_s'])}"
            f"; from git HEAD (Copier clones the repository) vs {folder:.2f} s from a plain "
            "folder."
        )
    lines += ["", "Per run (ours / usual):", "", "| figure | ours | usual |", "|---|---|---|"]
    for kind, key, unit in (
        ("root", "rps", "req/s"),
        ("enqueue", "rps", "req/s"),
        ("status", "rps", "req/s"),
        ("enqueue", "wrk_p99_ms", "ms"),
        ("status", "wrk_p99_ms", "ms"),
        ("root", "loop_lag_max_ms", "ms"),
        ("enqueue", "loop_lag_max_ms", "ms"),
        ("status", "loop_lag_max_ms", "ms"),
        ("enqueue", "loop_lag_max_outside_stalls_ms", "ms"),
        ("status", "loop_lag_max_outside_stalls_ms", "ms"),
        ("enqueue", "idle_stalls", ""),
        ("status", "idle_stalls", ""),
        ("enqueue", "loop_lag_samples_in_stalls", ""),
        ("status", "loop_lag_samples_in_stalls", ""),
        ("enqueue", "loop_lag_p99_ms", "ms"),
        ("status", "loop_lag_p99_ms", "ms"),
        ("root", "gc_longest_ms", "ms"),
        ("enqueue", "gc_longest_ms", "ms"),
        ("status", "gc_longest_ms", "ms"),
        ("enqueue", "gc_full_collections", ""),
        ("status", "gc_full_collections", ""),
        ("enqueue", "idle_lag_max_ms", "ms"),
        ("status", "idle_lag_max_ms", "ms"),
        ("root", "api_cpu_us_per_request", ""),
        ("enqueue", "api_cpu_us_per_request", ""),
        ("status", "api_cpu_us_per_request", ""),
        ("enqueue", "redis_commands_per_request", ""),
        ("status", "redis_commands_per_request", ""),
        ("latency", "p50_ms", "ms"),
        ("latency", "p99_ms", "ms"),
    ):
        cells = [
            ", ".join(_fmt(run[key], unit) for run in _runs(results, kind, label))
            for label in SERVERS
        ]
        lines.append(f"| {kind}: {key} | {cells[0]} | {cells[1]} |")
    for n, by_label in sorted(figures.get("fanout", {}).items(), key=lambda kv: int(kv[0])):
        for key, unit in (
            ("delivery_p50_ms", "ms"),
            ("delivery_p99_ms", "ms"),
            ("redis_commands_per_update", ""),
            ("seconds", "s"),
            ("api_cpu_s", "s"),
            ("client_cpu_s", "s"),
        ):
            cells = [", ".join(_fmt(r[key], unit) for r in by_label[label]) for label in SERVERS]
            lines.append(f"| fan-out {n}: {key} | {cells[0]} | {cells[1]} |")
    lines += ["", "Redis commands per request (last run):", ""]
    for kind in ("enqueue", "status"):
        for label in SERVERS:
            runs = _runs(results, kind, label)
            if runs:
                counts = runs[-1]["redis_commands_by_name"]
                requests = runs[-1]["requests"] + runs[-1]["probe_samples"]
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:8]
                text = ", ".join(f"{name} {count / requests:.2f}" for name, count in top)
                lines.append(f"- {kind}, {label}: {text}")
    return lines
