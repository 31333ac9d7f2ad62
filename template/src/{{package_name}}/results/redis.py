"""A store for the Redis result backend: async reads, and updates pushed through pub/sub.

Celery's Redis backend stores each state with a SET and PUBLISHes it on a channel named after
the key, so a stream waits for pushes instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from celery.backends.redis import RedisBackend
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from .base import TaskState, queued_meta

logger = logging.getLogger(__name__)

# A stream re-reads its key this often while nothing arrives, in case a message was lost
# while the pub/sub connection was re-established.
RESYNC_SECONDS = 10.0


class RedisResultStore:
    def __init__(
        self, *, url: str, backend: RedisBackend, expires_seconds: int, socket_timeout: float
    ) -> None:
        self._backend = backend
        self._expires_seconds = expires_seconds
        self._socket_timeout = socket_timeout
        self._redis = Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._channels = ChannelHub(url, confirm_timeout=socket_timeout)

    def _key(self, task_id: str) -> bytes:
        key: bytes = self._backend.get_key_for_task(task_id)
        return key

    async def mark_queued(self, task_id: str) -> None:
        payload = self._backend.encode(queued_meta(task_id))
        await self._redis.set(self._key(task_id), payload, ex=self._expires_seconds, nx=True)

    async def discard(self, task_id: str) -> None:
        await self._redis.delete(self._key(task_id))

    async def get(self, task_id: str) -> TaskState | None:
        payload = await self._redis.get(self._key(task_id))
        return None if payload is None else TaskState.decode(payload)

    async def watch(self, task_id: str) -> AsyncGenerator[TaskState | None, None]:
        key = self._key(task_id)
        # Subscribe first, then read: no update can fall between the two.
        async with self._channels.listen(key) as updates:
            state = await self.get(task_id)
            yield state
            while state is not None and not state.ready:
                try:
                    current: TaskState | None = TaskState.decode(
                        await asyncio.wait_for(updates.get(), RESYNC_SECONDS)
                    )
                except TimeoutError:
                    current = await self.get(task_id)
                if current != state:
                    state = current
                    yield state

    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._channels.aclose()
        await self._redis.aclose()


class ChannelHub:
    """One pub/sub connection per process, fanned out to every stream that listens."""

    def __init__(self, url: str, *, confirm_timeout: float) -> None:
        # No socket timeout: the connection waits for messages as long as streams are open.
        # RESP2, because hiredis leaks memory per pub/sub message under RESP3.
        self._client: Redis = Redis.from_url(
            url, protocol=2, socket_connect_timeout=confirm_timeout
        )
        self._pubsub: PubSub = self._client.pubsub()
        self._confirm_timeout = confirm_timeout
        self._listeners: dict[bytes, set[asyncio.Queue[bytes]]] = {}
        self._subscribed: dict[bytes, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def listen(self, channel: bytes) -> AsyncIterator[asyncio.Queue[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        listeners = self._listeners.get(channel)
        if listeners is None:
            listeners = self._listeners[channel] = {queue}
            confirmed = self._subscribed[channel] = asyncio.get_running_loop().create_future()
            try:
                await self._pubsub.subscribe(channel)
            except BaseException:
                self._forget(channel, listeners)
                raise
            self._ensure_reader()
        else:
            listeners.add(queue)
            confirmed = self._subscribed[channel]
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), self._confirm_timeout)
            yield queue
        finally:
            listeners.discard(queue)
            if not listeners and self._forget(channel, listeners):
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(channel)

    def _forget(self, channel: bytes, listeners: set[asyncio.Queue[bytes]]) -> bool:
        if self._listeners.get(channel) is not listeners:
            return False
        del self._listeners[channel]
        self._subscribed.pop(channel, None)
        return True

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="result-channel-reader")

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                logger.warning("Result channel connection lost; reconnecting", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel: bytes = message["channel"]
        if message["type"] == "subscribe":
            confirmed = self._subscribed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif message["type"] == "message":
            for queue in self._listeners.get(channel, ()):
                queue.put_nowait(message["data"])

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._client.aclose()
