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
    # lab 18.1 begin
    assert config.replica_region is not None
    return gcp.sql.DatabaseInstance(
        name,
        region=config.replica_region,
        database_version="POSTGRES_16",
        master_instance_name=primary.name,
        deletion_protection=config.deletion_protection,
        replica_configuration=gcp.sql.DatabaseInstanceReplicaConfigurationArgs(
            failover_target=False
        ),
        settings=gcp.sql.DatabaseInstanceSettingsArgs(
            tier=config.db_tier,
            edition="ENTERPRISE",
            availability_type="ZONAL",
            disk_autoresize=True,
            deletion_protection_enabled=config.deletion_protection,
            user_labels=labels,
            ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                ipv4_enabled=False,
                private_network=network.network.id,
                ssl_mode="ENCRYPTED_ONLY",
            ),
        ),
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[primary, network.connection])
        ),
    )
    # lab 18.1 end
