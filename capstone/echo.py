"""The smallest runtime that boots: an echo session handler on Postgres.

    python -m capstone.echo          serve on 127.0.0.1:8090 (ECHO_PORT)

It has the three things every runtime in this course has: a liveness probe that
answers while the process is up, a readiness probe that answers only once the
database does, and a handler whose state lives in Postgres, not in the process.

    GET  /healthz                 200 while the process is up
    GET  /readyz                  200 once the database answers, 503 until then
    POST /echo/{sessionId}        {"text": ...} -> {"sessionId", "reply", "count"}
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
import uvicorn
from fastapi import FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from capstone.domain.ids import ID_PATTERN

READINESS_TIMEOUT_SECONDS = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS echo_sessions (
    session_id varchar(64) PRIMARY KEY,
    echoes     integer NOT NULL
)
"""


class EchoRequest(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class EchoReply(BaseModel):
    session_id: str = Field(serialization_alias="sessionId")
    reply: str
    count: int


async def readiness(pool: asyncpg.Pool, timeout: float) -> tuple[bool, str]:
    """Whether the database answers a query within ``timeout`` seconds, and why not."""
    # lab 1.1 begin
    try:
        async with asyncio.timeout(timeout):
            await pool.fetchval("SELECT 1")
    except TimeoutError:
        return False, f"the database did not answer within {timeout}s"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return False, f"the database is unreachable: {error}"
    return True, "ok"
    # lab 1.1 end


async def record_echo(pool: asyncpg.Pool, session_id: str) -> int:
    """Count one more echo for the session, in Postgres; return the new count."""
    # lab 1.2 begin
    # One statement: two requests of one session can never read the same count.
    count = await pool.fetchval(
        "INSERT INTO echo_sessions (session_id, echoes) VALUES ($1, 1) "
        "ON CONFLICT (session_id) DO UPDATE SET echoes = echo_sessions.echoes + 1 "
        "RETURNING echoes",
        session_id,
    )
    return int(count)
    # lab 1.2 end


def echo_reply(session_id: str, text: str) -> str:
    """The echo: the text, prefixed with the session it belongs to."""
    # lab 1.3 begin
    return f"[{session_id}] {text}"
    # lab 1.3 end


def create_echo_app(
    database_url: str, readiness_timeout: float = READINESS_TIMEOUT_SECONDS
) -> FastAPI:
    state: dict[str, asyncpg.Pool] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # min_size=0: the process starts, and answers /healthz, even while the
        # database is still down; /readyz tells the two apart.
        state["pool"] = await asyncpg.create_pool(
            database_url, min_size=0, max_size=5, timeout=readiness_timeout
        )
        try:
            yield
        finally:
            await state["pool"].close()

    app = FastAPI(title="Echo runtime", lifespan=lifespan)
    schema_ready = asyncio.Lock()
    made: list[bool] = []

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, reason = await readiness(state["pool"], readiness_timeout)
        return JSONResponse({"ready": ready, "reason": reason}, 200 if ready else 503)

    @app.post("/echo/{sessionId}")
    async def echo(
        session_id: Annotated[
            str, Path(alias="sessionId", max_length=64, pattern=ID_PATTERN)
        ],
        body: EchoRequest,
    ) -> JSONResponse:
        try:
            async with schema_ready:
                if not made:
                    await state["pool"].execute(SCHEMA)
                    made.append(True)
            count = await record_echo(state["pool"], session_id)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
            message = "the database is unavailable; retry later"
            return JSONResponse(
                {"error": {"code": "unavailable", "message": message}}, 503
            )
        reply = EchoReply(
            session_id=session_id, reply=echo_reply(session_id, body.text), count=count
        )
        return JSONResponse(reply.model_dump(by_alias=True))

    return app


if __name__ == "__main__":
    from capstone import devdb

    uvicorn.run(
        create_echo_app(os.environ.get("DATABASE_URL") or devdb.database_url()),
        host="127.0.0.1",
        port=int(os.environ.get("ECHO_PORT", "8090")),
    )
