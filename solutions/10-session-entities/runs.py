"""Start, poll and cancel runs: what the HTTP and WebSocket routes share.

The gateway never runs workflow code. It records the run, enqueues the workflow
through a ``DBOSClient`` and reads the outcome back from Postgres; any runner
listening on the queue picks the run up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
from dbos import DBOSClient, EnqueueOptions

from capstone import sessions
from capstone.domain import (
    Cancelled,
    ErrorBody,
    RunRequest,
    RunStarted,
    RunStatus,
    RunView,
    Usage,
)
from capstone.eventstore import EventStore, KeyedEvent
from capstone.runtime.settings import AGENT_QUEUE, AGENT_WORKFLOW, APPLICATION_VERSION

_DBOS_TO_RUN_STATUS = {
    "ENQUEUED": RunStatus.QUEUED,
    "DELAYED": RunStatus.QUEUED,
    "PENDING": RunStatus.RUNNING,
    "SUCCESS": RunStatus.COMPLETED,
    "ERROR": RunStatus.FAILED,
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": RunStatus.FAILED,
    "CANCELLED": RunStatus.CANCELLED,
}


class RunNotFound(LookupError):
    pass


def partition_key(tenant_id: str, session_id: str) -> str:
    """The queue partition of a session: its runs run one at a time."""
    return f"{tenant_id}/{session_id}"


class RunService:
    def __init__(self, pool: asyncpg.Pool, events: EventStore, client: DBOSClient):
        self.pool = pool
        self.events = events
        self.client = client

    async def start(
        self, tenant_id: str, session_id: str, request: RunRequest
    ) -> RunStarted:
        record, _ = await sessions.create_run(
            self.pool, tenant_id, session_id, request.run_id, request.message
        )
        options: EnqueueOptions = {
            "workflow_name": AGENT_WORKFLOW,
            "queue_name": AGENT_QUEUE,
            # The workflow ID is the execution id: DBOS returns the existing
            # execution for a repeated start instead of creating a second one.
            "workflow_id": record.execution_id,
            "queue_partition_key": partition_key(tenant_id, session_id),
            "app_version": APPLICATION_VERSION,
        }
        job = {
            "execution_id": record.execution_id,
            "tenant_id": tenant_id,
            "session_id": session_id,
            "run_id": request.run_id,
            "message": request.message,
        }
        # Enqueued on every call, not only the first: a gateway that died between
        # recording the run and enqueueing it is repaired by the client's retry.
        await self.client.enqueue_async(options, job)
        return RunStarted(
            execution_id=record.execution_id,
            session_id=session_id,
            run_id=request.run_id,
        )

    async def record(self, tenant_id: str, execution_id: str) -> sessions.RunRecord:
        record = await sessions.get_run(self.pool, execution_id)
        # Another tenant's run is reported as missing, not as forbidden.
        if record is None or record.tenant_id != tenant_id:
            raise RunNotFound(execution_id)
        return record

    async def view(self, tenant_id: str, execution_id: str) -> RunView:
        record = await self.record(tenant_id, execution_id)
        statuses = await self.client.list_workflows_async(
            workflow_ids=[execution_id], load_input=False, load_output=False
        )
        status = (
            _DBOS_TO_RUN_STATUS.get(statuses[0].status, RunStatus.RUNNING)
            if statuses
            else RunStatus.QUEUED
        )
        if record.closed_by is not None:
            # The terminal event is stored before DBOS records the workflow's end;
            # a client that has seen it must not then be told the run is running.
            status = RunStatus(record.closed_by)

        answer: str | None = None
        usage: Usage | None = None
        error: ErrorBody | None = None
        rows = await self.pool.fetch(
            "SELECT event_type, payload FROM agent_events WHERE execution_id = $1 "
            "AND event_type IN ('completed', 'failed')",
            execution_id,
        )
        for row in rows:
            data = json.loads(row["payload"])
            if row["event_type"] == "completed":
                answer, usage = data["answer"], Usage.model_validate(data["usage"])
            else:
                error = ErrorBody.model_validate(data["error"])

        updated = (
            record.closed_at
            or (
                datetime.fromtimestamp(statuses[0].updated_at / 1000, UTC)
                if statuses and statuses[0].updated_at
                else None
            )
            or record.created_at
        )
        return RunView(
            execution_id=execution_id,
            tenant_id=record.tenant_id,
            session_id=record.session_id,
            run_id=record.run_id,
            status=status,
            answer=answer,
            usage=usage,
            error=error,
            created_at=record.created_at,
            updated_at=updated,
        )

    async def cancel(self, tenant_id: str, execution_id: str) -> RunView:
        """Cancel a queued or running run; a finished run is left as it is."""
        record = await self.record(tenant_id, execution_id)
        if record.closed_by is None:
            await self.client.cancel_workflow_async(execution_id)
            # Stored after DBOS has marked the workflow cancelled. A step still
            # finishing its last write is stopped by the event store: nothing is
            # stored for an execution after its terminal event.
            statuses = await self.client.list_workflows_async(
                workflow_ids=[execution_id], load_input=False, load_output=False
            )
            if not statuses or statuses[0].status == "CANCELLED":
                await self.events.append(
                    execution_id, [KeyedEvent("cancelled", Cancelled())]
                )
        return await self.view(tenant_id, execution_id)
