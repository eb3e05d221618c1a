"""The durable event store: append once, replay after an id, follow live.

Each session has one stream. Appending locks the stream's row in ``event_streams``
for the length of the transaction, takes the next ids from it and commits. Because
the lock is held until commit, id N+1 can only become visible after id N has: a
reader that has seen id N and asks for ``event_id > N`` can never skip an event a
slower writer was still committing. A plain ``bigserial`` would not give this.

Every event carries a key unique within its execution (``"accepted"``,
``"m0:tok:17"``, ...). A step that runs twice (a retry, or a runner that crashed
after writing but before DBOS recorded the step) writes the same keys again, and
the second write is a no-op. After a terminal event (completed, failed, cancelled)
nothing more is stored for that execution.

Live tail: every append sends ``NOTIFY agent_events`` with the stream's key in the
same transaction, so it is delivered on commit. One listening connection per
process wakes the readers of that stream, who then read the new rows from the table;
a periodic re-read covers a notification lost with a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import asyncpg

from capstone.domain import StoredEvent, is_terminal
from capstone.domain.events import TERMINAL_TYPES, AgentEvent

log = logging.getLogger("capstone.eventstore")

NOTIFY_CHANNEL = "agent_events"

# Errors that mean the database could not be reached, not that a query was wrong.
# InternalClientError is asyncpg's "another operation is in progress" on a
# connection the server dropped mid-query; a fresh connection clears it.
DATABASE_OUTAGE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
T = TypeVar("T")
PAGE_SIZE = 500
RESCAN_SECONDS = 2.0


class UnknownExecution(LookupError):
    """An append named an execution that has no row in ``runs``."""


@dataclass(frozen=True)
class KeyedEvent:
    """An event with the key that makes its append idempotent."""

    key: str
    event: AgentEvent


def _stream_key(tenant_id: str, session_id: str) -> str:
    return f"{tenant_id}/{session_id}"


def _row_to_event(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent.model_validate(
        {
            "id": row["event_id"],
            "tenantId": row["tenant_id"],
            "sessionId": row["session_id"],
            "executionId": row["execution_id"],
            "at": row["created_at"],
            "event": json.loads(row["payload"]),
        }
    )


_SELECT = (
    "SELECT tenant_id, session_id, event_id, execution_id, payload, created_at "
    "FROM agent_events "
)


async def lock_stream(conn: asyncpg.Connection, tenant_id: str, session_id: str) -> int:
    """Lock the session's stream row until the transaction ends; return its last id.

    Every writer of the session queues here, so ids are handed out and committed
    in the same order: no reader can see id N+1 before id N.
    """
    # lab 12.1 begin
    last_id = await conn.fetchval(
        "INSERT INTO event_streams (tenant_id, session_id) VALUES ($1, $2) "
        "ON CONFLICT (tenant_id, session_id) DO UPDATE "
        "SET last_event_id = event_streams.last_event_id "
        "RETURNING last_event_id",
        tenant_id,
        session_id,
    )
    return int(last_id)
    # lab 12.1 end


def new_events(events: Sequence[KeyedEvent], known: set[str]) -> list[KeyedEvent]:
    """The events to store: keys not stored yet, each once, up to a terminal event."""
    # lab 12.2 begin
    fresh: list[KeyedEvent] = []
    seen = set(known)
    for item in events:
        if item.key in seen:
            continue
        seen.add(item.key)
        fresh.append(item)
        if is_terminal(item.event):
            break
    return fresh
    # lab 12.2 end


class EventStore:
    """Append, replay and follow the session streams in Postgres."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._tail = _Tail(pool)

    async def close(self) -> None:
        await self._tail.close()

    async def append(
        self, execution_id: str, events: Sequence[KeyedEvent]
    ) -> list[StoredEvent]:
        """Store events of one execution; return those that were new.

        Keys already stored are skipped, and so is everything after the
        execution's terminal event.
        """
        if not events:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            run = await conn.fetchrow(
                "SELECT tenant_id, session_id FROM runs WHERE execution_id = $1",
                execution_id,
            )
            if run is None:
                raise UnknownExecution(execution_id)
            tenant_id, session_id = run["tenant_id"], run["session_id"]

            last_id = await lock_stream(conn, tenant_id, session_id)
            closed = await conn.fetchval(
                "SELECT closed_by FROM runs WHERE execution_id = $1", execution_id
            )
            if closed is not None:
                log.info(
                    "dropped %d event(s) after %s",
                    len(events),
                    closed,
                    extra={"execution_id": execution_id},
                )
                return []

            known = set(
                await conn.fetchval(
                    "SELECT coalesce(array_agg(event_key), '{}') FROM agent_events "
                    "WHERE execution_id = $1 AND event_key = ANY($2::text[])",
                    execution_id,
                    [item.key for item in events],
                )
            )
            fresh = new_events(events, known)
            if not fresh:
                return []
            terminal = fresh[-1].event.type if is_terminal(fresh[-1].event) else None

            rows = await conn.fetch(
                "INSERT INTO agent_events "
                "(tenant_id, session_id, event_id, execution_id, event_key, "
                " event_type, payload) "
                "SELECT $1, $2, $3 + n, $4, k, t, p::jsonb "
                "FROM unnest($5::text[], $6::text[], $7::text[]) "
                "WITH ORDINALITY AS e(k, t, p, n) "
                "RETURNING tenant_id, session_id, event_id, execution_id, payload, "
                "created_at",
                tenant_id,
                session_id,
                last_id,
                execution_id,
                [item.key for item in fresh],
                [item.event.type for item in fresh],
                [item.event.model_dump_json(by_alias=True) for item in fresh],
            )
            await conn.execute(
                "UPDATE event_streams SET last_event_id = $3 "
                "WHERE tenant_id = $1 AND session_id = $2",
                tenant_id,
                session_id,
                last_id + len(fresh),
            )
            if terminal is not None:
                await conn.execute(
                    "UPDATE runs SET closed_at = now(), closed_by = $2 "
                    "WHERE execution_id = $1",
                    execution_id,
                    terminal,
                )
            await conn.execute(
                "SELECT pg_notify($1, $2)",
                NOTIFY_CHANNEL,
                _stream_key(tenant_id, session_id),
            )
        stored = sorted((_row_to_event(row) for row in rows), key=lambda e: e.id)
        return stored

    async def stream_head(self, tenant_id: str, session_id: str) -> int:
        """The last committed event id of a session's stream (0 when empty)."""
        head = await self.pool.fetchval(
            "SELECT last_event_id FROM event_streams "
            "WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id,
        )
        return int(head or 0)

    async def replay_session(
        self, tenant_id: str, session_id: str, after: int = 0, limit: int = PAGE_SIZE
    ) -> list[StoredEvent]:
        """The session's stored events after id ``after``, in order, a page at most."""
        # lab 12.3 begin
        rows = await self.pool.fetch(
            _SELECT + "WHERE tenant_id = $1 AND session_id = $2 AND event_id > $3 "
            "ORDER BY event_id LIMIT $4",
            tenant_id,
            session_id,
            after,
            limit,
        )
        return [_row_to_event(row) for row in rows]
        # lab 12.3 end

    async def replay_execution(
        self, execution_id: str, after: int = 0, limit: int = PAGE_SIZE
    ) -> list[StoredEvent]:
        rows = await self.pool.fetch(
            _SELECT + "WHERE execution_id = $1 AND event_id > $2 "
            "ORDER BY event_id LIMIT $3",
            execution_id,
            after,
            limit,
        )
        return [_row_to_event(row) for row in rows]

    async def follow_session(
        self, tenant_id: str, session_id: str, after: int = 0
    ) -> AsyncIterator[StoredEvent]:
        """Every event of the session after ``after``: the stored ones, then live."""
        async with self._tail.subscribe(_stream_key(tenant_id, session_id)) as wake:
            cursor = after
            while True:
                page = await self._read_through_outage(
                    partial(self.replay_session, tenant_id, session_id, cursor)
                )
                for event in page:
                    cursor = event.id
                    yield event
                if len(page) < PAGE_SIZE:
                    await wake.wait_for_news()

    async def follow_execution(
        self, execution_id: str, after: int = 0
    ) -> AsyncIterator[StoredEvent]:
        """One execution's events after ``after``, up to and with its terminal one."""
        run = await self.pool.fetchrow(
            "SELECT tenant_id, session_id FROM runs WHERE execution_id = $1",
            execution_id,
        )
        if run is None:
            raise UnknownExecution(execution_id)
        stream = _stream_key(run["tenant_id"], run["session_id"])
        async with self._tail.subscribe(stream) as wake:
            cursor = after
            while True:
                page = await self._read_through_outage(
                    partial(self.replay_execution, execution_id, cursor)
                )
                for event in page:
                    cursor = event.id
                    yield event
                    if event.event.type in TERMINAL_TYPES:
                        return
                if len(page) < PAGE_SIZE:
                    closed = await self._read_through_outage(
                        partial(self._is_closed, execution_id)
                    )
                    if closed and not page:
                        # Closed with nothing after the cursor: the reader resumed
                        # past the terminal event.
                        return
                    await wake.wait_for_news()

    async def _read_through_outage(self, read: Callable[[], Awaitable[T]]) -> T:
        """Run one read; while the database is unreachable, wait and try again.

        A reader holds only its cursor, so after an outage it carries on from
        where it was, and nothing is skipped or sent twice.
        """
        delay = 0.5
        while True:
            try:
                return await read()
            except DATABASE_OUTAGE as error:
                log.warning("event read failed (%s); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _is_closed(self, execution_id: str) -> bool:
        closed = await self.pool.fetchval(
            "SELECT closed_by FROM runs WHERE execution_id = $1", execution_id
        )
        return closed is not None


class _Wake:
    """One reader's doorbell: set by a notification, or by time as a fallback."""

    def __init__(self, tail: _Tail) -> None:
        self._tail = tail
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait_for_news(self) -> None:
        # After a lost connection, the next wait listens again.
        await self._tail.ensure_listening()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), RESCAN_SECONDS)
        self._event.clear()


class _Tail:
    """One LISTEN connection per process, fanned out to the readers of each stream."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._readers: dict[str, set[_Wake]] = defaultdict(set)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, stream: str) -> None:
        for wake in self._readers.get(stream, ()):
            wake.ring()

    def _on_lost(self, _conn: Any) -> None:
        # The next subscriber reconnects; readers fall back to periodic re-reads.
        log.warning("event tail connection lost; readers fall back to polling")
        self._conn = None
        for readers in self._readers.values():
            for wake in readers:
                wake.ring()

    async def ensure_listening(self) -> None:
        """LISTEN on one pooled connection, if not already; polling covers failures."""
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                conn = await self._pool.acquire()
            except DATABASE_OUTAGE as error:
                log.warning(
                    "cannot LISTEN (%s); polling every %ss", error, RESCAN_SECONDS
                )
                return
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            except DATABASE_OUTAGE:
                await self._pool.release(conn)
                return
            conn.add_termination_listener(self._on_lost)
            self._conn = conn

    @contextlib.asynccontextmanager
    async def subscribe(self, stream: str) -> AsyncIterator[_Wake]:
        wake = _Wake(self)
        # Listen before the first read, so nothing committed in between is missed.
        self._readers[stream].add(wake)
        try:
            await self.ensure_listening()
            yield wake
        finally:
            readers = self._readers.get(stream)
            if readers is not None:
                readers.discard(wake)
                if not readers:
                    del self._readers[stream]

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                with contextlib.suppress(Exception):
                    await self._conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                await self._pool.release(self._conn)
            self._conn = None
