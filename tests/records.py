"""A booted variant's own broker and result backend, and views of its result records.

- `variant_backends()`: Redis databases, a RabbitMQ vhost, a PostgreSQL database of its own.
- `ResultRecords` (`RedisResultRecords`, `PostgresResultRecords`): the task records as
  stored, to snapshot, read raw or remove (PostgreSQL: also insert an expired one).
- `store_task_states()`: task states written through the service's own Celery backend.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.processes import redis_databases
from harness.rendering import RenderedProject
from harness.services import (
    REDIS_HOST,
    REDIS_PORT,
    postgres_database,
    rabbitmq_vhost,
    require_service,
)

# --------------------------------------------------------------------------------------
# A variant's broker and result backend


_STORE_STATES = """
import json, sys
from {package}.celery_app import celery_app
for state, result in json.loads(sys.argv[2]):
    celery_app.backend.store_result(sys.argv[1], result, state)
"""


def store_task_states(
    project: RenderedProject, env: dict[str, str], task_id: str, states: list[tuple[str, Any]]
) -> None:
    """Store `(state, result)`s of a task, in order, as a worker does: through the service's
    own Celery result backend (on Redis, a SET and a PUBLISH each), in a process of its own."""
    script = _STORE_STATES.format(package=project.package_name)
    done = project.run("python", "-c", script, task_id, json.dumps(states), env=env, timeout=60)
    assert done.returncode == 0, f"storing {states} failed:\n{done.stdout}\n{done.stderr}"


class ResultRecords:
    """What the result backend holds, seen from outside the service."""

    def snapshot(self) -> object:
        """Something equal before and after anything that must not store a record."""
        raise NotImplementedError

    def remove(self, task_id: str) -> None:
        """Delete a task's record, as expiry does, without telling anyone."""
        raise NotImplementedError

    def stored(self, task_id: str) -> str:
        """Everything stored for the task, as text (empty if nothing)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class RedisResultRecords(ResultRecords):
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.db = int(self.client.connection_pool.connection_kwargs.get("db", 0))

    def snapshot(self) -> object:
        return set(self.client.scan_iter(count=1000))

    def remove(self, task_id: str) -> None:
        assert self.client.delete(f"celery-task-meta-{task_id}") == 1, task_id

    def drop_result_channels(self) -> int:
        """Close the API's pub/sub connections (named `result-channels-<pid>`) on this
        database, as a network failure would; return how many there were."""
        dropped = 0
        for client in self.client.client_list():
            if client["name"].startswith("result-channels-") and int(client["db"]) == self.db:
                dropped += self.client.client_kill_filter(_id=client["id"])
        return dropped

    def stored(self, task_id: str) -> str:
        value = self.client.get(f"celery-task-meta-{task_id}")
        if value is None:
            return ""
        return value if isinstance(value, str) else value.decode(errors="replace")

    def close(self) -> None:
        self.client.close()


class PostgresResultRecords(ResultRecords):
    """Celery's SQLAlchemy result tables, read and written with psycopg."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def snapshot(self) -> object:
        """Rows per table of the public schema, leaving out empty tables: the service creates
        Celery's tables on first use, an attempt that stores nothing included."""
        with self._connect() as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' ORDER BY table_name"
                )
            ]
            counts = {
                table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                for table in tables
            }
            return {table: rows for table, rows in counts.items() if rows}

    def task_table(self) -> str:
        """The table Celery keeps task results in (task_id, status, date_done columns)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name IN ('task_id', 'date_done') "
                "GROUP BY table_name HAVING count(*) = 2"
            ).fetchall()
        if len(rows) != 1:
            raise AssertionError(f"expected one task result table, found {rows}")
        return str(rows[0][0])

    def insert_expired(self, task_id: str, age_days: int = 30) -> None:
        """A SUCCESS row done `age_days` ago, as Celery would have written it."""
        table = self.task_table()
        with self._connect() as conn:
            conn.execute(
                f'INSERT INTO "{table}" (id, task_id, status, date_done) '
                "VALUES (nextval('task_id_sequence'), %s, 'SUCCESS', "
                "(now() at time zone 'utc') - make_interval(days => %s))",
                (task_id, age_days),
            )

    def remove(self, task_id: str) -> None:
        table = self.task_table()
        with self._connect() as conn:
            deleted = conn.execute(f'DELETE FROM "{table}" WHERE task_id = %s', (task_id,))
            assert deleted.rowcount == 1, task_id

    def stored(self, task_id: str) -> str:
        """Every column of the task's rows; `result` (bytea: Celery's JSON, pickled) decoded
        as text, so the JSON in it can be searched."""
        table = self.task_table()
        with self._connect() as conn:
            rows = conn.execute(f'SELECT * FROM "{table}" WHERE task_id = %s', (task_id,))
            return "\n".join(
                " ".join(
                    bytes(value).decode(errors="replace")
                    if isinstance(value, bytes | memoryview)
                    else str(value)
                    for value in row
                )
                for row in rows
            )

    def has(self, task_id: str) -> bool:
        table = self.task_table()
        with self._connect() as conn:
            row = conn.execute(
                f'SELECT count(*) FROM "{table}" WHERE task_id = %s',
                (task_id,),
            ).fetchone()
        return bool(row and row[0])


@dataclass
class Backends:
    broker_url: str
    result_backend_url: str
    results: ResultRecords
    rabbitmq_vhost: str | None = None  # the vhost's name, with broker=rabbitmq


@contextlib.contextmanager
def variant_backends(broker: str, result_backend: str) -> Iterator[Backends]:
    """A broker and a result backend that nothing else uses, removed afterwards.

    Redis: claimed databases (`redis_databases`). RabbitMQ: a fresh vhost. PostgreSQL: a
    fresh database, reached as postgres without a password (trusted on 127.0.0.1).
    """
    with contextlib.ExitStack() as stack:
        redis_count = [broker, result_backend].count("redis")
        databases: list[int] = []
        if redis_count:
            require_service("Redis", REDIS_HOST, REDIS_PORT)
            databases = stack.enter_context(
                redis_databases(redis_count, host=REDIS_HOST, port=REDIS_PORT)
            )
        vhost = None
        if broker == "redis":
            broker_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{databases.pop(0)}"
        else:
            broker_url = stack.enter_context(rabbitmq_vhost())
            vhost = broker_url.rsplit("/", 1)[1]
        results: ResultRecords
        if result_backend == "redis":
            backend_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{databases.pop(0)}"
            results = RedisResultRecords(backend_url)
        else:
            url = stack.enter_context(postgres_database())
            backend_url = url.replace("postgresql://", "db+postgresql+psycopg://", 1)
            results = PostgresResultRecords(url)
        stack.callback(results.close)
        yield Backends(broker_url, backend_url, results, vhost)
