"""The template's benchmark: the rendered default service against the patterns it replaces.

`uv run python -m bench` renders the default variant and boots four contenders side by side
(one uvicorn process each, one Celery worker, a loopback Redis): the service, the service with
`FAST_PATHS=false`, the careful pattern (`apps/careful_app.py`: the guide's endpoints with
their blocking Celery calls in a thread) and the usual pattern (`apps/usual_app.py`: the
guide's FastAPI code, blocking Celery calls in `async def` endpoints and SSE that polls every
second). It drives them in turn with wrk and an httpx client, prints the figures and writes
them to `bench/results/latest.md` and `.json`. `--smoke` is the short version for CI (results
in `bench-results/`): it fails only if a phase does not complete or a stream of ours (either
setting) misses an update, never on timings.

- `run.py`: the phases and the stack; `clients.py`: wrk, the probe, the SSE client;
  `observer.py`: the pub/sub observer process (reference times of updates);
  `report.py`: medians, targets and the table.
- `apps/`: what runs inside the rendered project's environment (uvicorn `--app-dir`): the
  careful and the usual pattern, `lagwrap.py`, the ASGI pass-through that measures event-loop
  lag, and `lagmonitor.py`, the monitor it runs (also run alone, as an idle process).
"""
