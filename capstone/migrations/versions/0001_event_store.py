"""Runs, the session event streams, session memory and runner heartbeats.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per run. The execution id is derived from (tenant, session, runId), so
    # the primary key is also the idempotency key of POST /agents/{sessionId}/runs.
    op.execute(
        """
        CREATE TABLE runs (
            execution_id   varchar(128) PRIMARY KEY,
            tenant_id      varchar(64) NOT NULL,
            session_id     varchar(64) NOT NULL,
            run_id         varchar(128) NOT NULL,
            message_sha256 text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now(),
            closed_at      timestamptz,
            closed_by      text
        )
        """
    )
    op.execute(
        "CREATE INDEX runs_by_session ON runs (tenant_id, session_id, created_at)"
    )

    # One row per session stream: the last event id handed out. Appends lock this
    # row, so ids are assigned and committed in order, one writer at a time.
    op.execute(
        """
        CREATE TABLE event_streams (
            tenant_id     varchar(64) NOT NULL,
            session_id    varchar(64) NOT NULL,
            last_event_id bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, session_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE agent_events (
            tenant_id    varchar(64) NOT NULL,
            session_id   varchar(64) NOT NULL,
            event_id     bigint NOT NULL,
            execution_id varchar(128) NOT NULL REFERENCES runs (execution_id),
            event_key    text NOT NULL,
            event_type   varchar(32) NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            payload      jsonb NOT NULL,
            PRIMARY KEY (tenant_id, session_id, event_id),
            UNIQUE (execution_id, event_key)
        )
        """
    )
    op.execute(
        "CREATE INDEX agent_events_by_execution "
        "ON agent_events (execution_id, event_id)"
    )

    # Durable session memory: one row per finished turn. Runners keep nothing a
    # restart would lose.
    op.execute(
        """
        CREATE TABLE session_turns (
            tenant_id    varchar(64) NOT NULL,
            session_id   varchar(64) NOT NULL,
            execution_id varchar(128) NOT NULL UNIQUE REFERENCES runs (execution_id),
            user_message text NOT NULL,
            answer       text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, session_id, execution_id)
        )
        """
    )

    op.execute(
        """
        CREATE TABLE runners (
            runner_id           varchar(64) PRIMARY KEY,
            application_version text NOT NULL,
            queues              text[] NOT NULL,
            started_at          timestamptz NOT NULL DEFAULT now(),
            last_seen_at        timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE runners")
    op.execute("DROP TABLE session_turns")
    op.execute("DROP TABLE agent_events")
    op.execute("DROP TABLE event_streams")
    op.execute("DROP TABLE runs")
