"""Which tenant a request acts for.

Inside the cluster the tenant is the ``X-Tenant-Id`` header, set by the edge from a
verified token and by nothing else. The header must appear at most once: if a
client's own copy could travel next to the edge's, whichever a proxy kept would
decide the tenant.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from capstone.domain import is_valid_id
from capstone.domain.ids import ID_RULE

TENANT_HEADER = "x-tenant-id"


class ClientError(Exception):
    """A request the client must change; becomes a 4xx reply or an error frame."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def tenant_of(connection: HTTPConnection, default_tenant: str) -> str:
    values = connection.headers.getlist(TENANT_HEADER)
    if not values:
        return default_tenant
    if len(values) > 1:
        raise ClientError(400, "invalid_request", "send X-Tenant-Id at most once")
    if not is_valid_id(values[0]):
        raise ClientError(
            422,
            "invalid_request",
            f"X-Tenant-Id may hold {ID_RULE}, up to 64 characters",
        )
    return values[0]
