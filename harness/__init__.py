"""What the template's tests (tests/) and its benchmark (bench/) both use.

- `harness.rendering`: rendering the template (`render()`, `snapshot_template()`) and
  running commands in a rendered project (`RenderedProject`, `project_env()`).
- `harness.services`: the machine's Redis, RabbitMQ and PostgreSQL, a part of each per user.
- `harness.processes`: a rendered service's API and worker processes, free ports, claimed
  Redis databases and private `redis-server`s.
- `harness.sse`: server-sent events, parsed and read as a client does.
"""
