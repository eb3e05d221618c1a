"""A cross-region read replica: the disaster-recovery copy of the primary.

The primary's regional HA covers a lost zone. A lost region needs a copy elsewhere:
an asynchronous replica that an operator promotes (``infra/runbook.py``). Cloud SQL
never fails over to a PostgreSQL read replica on its own, so promotion is a
decision and a runbook, not a setting.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.network import Network


def read_replica(
    name: str,
    config: StackConfig,
    primary: gcp.sql.DatabaseInstance,
    network: Network,
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> gcp.sql.DatabaseInstance:
    """A replica of ``primary`` in ``config.replica_region``: same version and
    tier, private IP only, zonal (promotion makes it the new primary; HA comes
    after), protected from deletion in prod."""
    raise NotImplementedError("Task 1: a private read replica in another region")
