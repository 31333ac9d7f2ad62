"""The benchmark's figures: medians over the runs, ratios, targets, and the Markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Any

STALL_MS = 2.0  # the idle process woke this late: the machine held it up (its p99 is ~0.8 ms)

# The contenders, in the report's column order (bench/run.py serves each).
SERVERS = ("ours", "ours-off", "careful", "usual")
OTHERS = SERVERS[1:]
TITLES = {
    "ours": "ours",
    "ours-off": "ours, fast paths off",
    "careful": "careful pattern",
    "usual": "usual pattern",
}
RATIO_TITLES = {"ours-off": "off", "careful": "careful", "usual": "usual"}


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
    """One row per figure: each contender's value, ours ÷ each other one (oriented so that
    above 1 means ours is better; none for rows without a direction), target and met (None:
    no target)."""
    rows: list[dict[str, Any]] = []

    def row(
        figure: str,
        values: dict[str, Any],
        better: str | None = None,  # "higher" or "lower" is better: the ratios' direction
        target: str = "",
        met: bool | None = None,
        unit: str = "",
    ) -> None:
        ratios = {}
        if better is not None:
            for other in OTHERS:
                ours, theirs = values["ours"], values.get(other, float("nan"))
                ratios[other] = _ratio(ours, theirs) if better == "higher" else _ratio(theirs, ours)
        rows.append(
            {
                "figure": figure,
                "values": values,
                "ratios": ratios,
                "target": target,
                "met": met,
                "unit": unit,
            }
        )

    def medians(kind: str, key: str) -> dict[str, float]:
        return {label: _med(results, kind, label, key) for label in SERVERS}

    rps = {kind: medians(kind, "rps") for kind in ("root", "enqueue", "status")}
    row("trivial `GET /` throughput", rps["root"], "higher", "(reference)", unit="req/s")
    ratio = _ratio(rps["enqueue"]["ours"], rps["enqueue"]["usual"])
    row(
        "enqueue `POST /api/process` throughput",
        rps["enqueue"],
        "higher",
        "≥ 2x usual",
        ratio >= 2,
        unit="req/s",
    )
    own = {label: _ratio(rps["enqueue"][label], rps["root"][label]) for label in SERVERS}
    row("enqueue ÷ the same server's `GET /`", own, None, "≥ 0.35", own["ours"] >= 0.35)
    ratio = _ratio(rps["status"]["ours"], rps["status"]["usual"])
    row(
        "status `GET /api/task/{id}` throughput",
        rps["status"],
        "higher",
        "≥ 1.5x usual",
        ratio >= 1.5,
        unit="req/s",
    )

    p50 = medians("latency", "p50_ms")
    row(
        "no-op task, submit → final SSE event, p50",
        p50,
        "lower",
        "≤ 10 ms",
        p50["ours"] <= 10,
        unit="ms",
    )
    row(
        "no-op task, submit → final SSE event, p99",
        medians("latency", "p99_ms"),
        "lower",
        unit="ms",
    )

    fanout: dict[str, dict[str, list[dict[str, Any]]]] = results["figures"].get("fanout", {})
    counts = sorted(fanout, key=int)
    if counts:
        largest = counts[-1]

        def delivered(label: str) -> str:
            runs = fanout[largest].get(label, [])
            got = sum(r["updates_delivered"] for r in runs)
            expected = sum(r["updates_expected"] for r in runs)
            return f"{100 * got / expected:.1f} % ({got:,}/{expected:,})" if expected else "-"

        every = all(
            r["updates_delivered"] == r["updates_expected"] for r in fanout[largest]["ours"]
        )
        row(
            f"SSE fan-out, {largest} streams: progress updates delivered",
            {label: delivered(label) for label in SERVERS},
            None,
            "every stream gets every update",
            every,
        )
        d99 = {
            label: _median([r["delivery_p99_ms"] for r in fanout[largest].get(label, [])])
            for label in SERVERS
        }
        row(
            f"SSE fan-out, {largest} streams: delivery p99 (publish → client)",
            d99,
            "lower",
            "≤ 100 ms",
            d99["ours"] <= 100,
            unit="ms",
        )
        per_update = {
            n: {
                label: _median([r["redis_commands_per_update"] for r in fanout[n].get(label, [])])
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
                per_update[n],
                None,
                "does not grow with streams" if flat is not None else "",
                flat,
            )

    row(
        "event-loop lag, max during the trivial `GET /` load",
        medians("root", "loop_lag_max_ms"),
        None,
        "(reference)",
        unit="ms",
    )
    for kind in ("enqueue", "status"):
        lag = medians(kind, "loop_lag_max_outside_stalls_ms")
        row(
            f"event-loop lag, max during the {kind} load, outside the machine's stalls",
            lag,
            "lower",
            "≤ 5 ms",
            lag["ours"] <= 5,
            unit="ms",
        )
        row(
            f"event-loop lag, max during the {kind} load, every sample",
            medians(kind, "loop_lag_max_ms"),
            None,
            "(stalls included)",
            unit="ms",
        )
        row(
            f"event-loop lag, p99 during the {kind} load",
            medians(kind, "loop_lag_p99_ms"),
            "lower",
            unit="ms",
        )
        row(
            f"lag max of an idle process beside the {kind} load",
            medians(kind, "idle_lag_max_ms"),
            None,
            "(the machine's share)",
            unit="ms",
        )
        row(
            f"probe `GET /` latency, max during the {kind} load",
            medians(kind, "probe_max_ms"),
            None,
            "(outside view)",
            unit="ms",
        )

    render = results["figures"].get("render", {})
    if render:
        head = _median(render["from_git_head_s"])
        row(
            "render one variant (Copier, from git HEAD)",
            {"ours": head},
            None,
            "≤ 2 s",
            head <= 2,
            unit="s",
        )
    fresh = results["figures"].get("fresh_to_green", {})
    if "total_s" in fresh:
        row(
            "fresh render → green tests (render + `uv sync` + pytest, warm cache)",
            {"ours": fresh["total_s"]},
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
        f"uvicorn with {stack.get('loop', '?')} and {stack.get('http', '?')} (every app).",
        "",
        "| figure | "
        + " | ".join(TITLES[label] for label in SERVERS)
        + " | "
        + " | ".join(f"ours ÷ {RATIO_TITLES[label]}" for label in OTHERS)
        + " | target | met |",
        "|---|" + "---:|" * (len(SERVERS) + len(OTHERS)) + "---|---|",
    ]
    for row in results.get("summary", []):
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        values = [_fmt(row["values"].get(label), row["unit"]) for label in SERVERS]
        ratios = [
            f"{_fmt(row['ratios'][label])}x" if label in row["ratios"] else "" for label in OTHERS
        ]
        lines.append(
            f"| {row['figure']} | {' | '.join(values)} | {' | '.join(ratios)} | "
            f"{row['target']} | {met} |"
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
        f"runs per app, in turn ({', '.join(SERVERS)}, ...). One "
        "uvicorn process per app (no access log), one Celery worker "
        f"(prefork, concurrency {p['worker_concurrency']}), every app on the same broker and "
        "result backend. Ours with the fast paths off is the same render with "
        "`FAST_PATHS=false`. The usual pattern is `bench/apps/usual_app.py`: the guide's code "
        "(blocking `delay()`/`AsyncResult` in `async def`, SSE polling every second), with "
        "the service's own Celery app and tasks; the careful pattern "
        "(`bench/apps/careful_app.py`) is the same with `delay()` and `AsyncResult` in a "
        "thread (`run_in_threadpool`).",
        f"- Throughput: `wrk -t1 -c{p['wrk_connections']} -d{p['wrk_seconds']}s` (POST body "
        "from a Lua script; status reads go round 100 finished tasks' ids), no worker "
        "running (queued tasks are purged after each run). Every response must be 2xx.",
        "- Event-loop lag: inside each API process, a task sleeps 2 ms in a loop and records "
        "how late it wakes (`bench/apps/lagwrap.py`, an ASGI pass-through around every app); "
        "the idle process runs the same monitor (`bench/apps/lagmonitor.py`) and serves "
        "nothing, beside the load: its lag is what the machine adds (other processes on the "
        f"two CPUs, the hypervisor). A stall is an idle-process wake-up more than {STALL_MS:g} ms "
        "late (its p99 is under 1 ms): the target rows leave out the API's samples whose sleep "
        "overlapped one, as the machine held both processes up then; the rows with every "
        "sample stand beside them. The probe row is the outside view: sequential `GET /` "
        "requests every 10 ms during the load (an upper bound that includes queueing behind "
        "wrk's connections).",
        "- Latency: "
        + ", ".join(f"{p['latency_samples'][label]} ({label})" for label in SERVERS)
        + " sequential no-op tasks per run (`POST /api/process` with `{}`, then the "
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
    lines += [
        "",
        "Per run:",
        "",
        "| figure | " + " | ".join(TITLES[label] for label in SERVERS) + " |",
        "|---|" + "---|" * len(SERVERS),
    ]
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
        lines.append(f"| {kind}: {key} | {' | '.join(cells)} |")
    for n, by_label in sorted(figures.get("fanout", {}).items(), key=lambda kv: int(kv[0])):
        for key, unit in (
            ("delivery_p50_ms", "ms"),
            ("delivery_p99_ms", "ms"),
            ("redis_commands_per_update", ""),
            ("seconds", "s"),
            ("api_cpu_s", "s"),
            ("client_cpu_s", "s"),
        ):
            cells = [
                ", ".join(_fmt(r[key], unit) for r in by_label.get(label, [])) for label in SERVERS
            ]
            lines.append(f"| fan-out {n}: {key} | {' | '.join(cells)} |")
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
