"""Cloud SQL for PostgreSQL 16: the single source of truth for runs, events and
DBOS's workflow state.

Regional (a standby in a second zone takes over on its own), reachable only on
its private IP, with daily backups and point-in-time recovery, and deletion
protection in prod. The connections it allows bound the runner and gateway pools:
db-custom-2-7680 allows about 200.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig, as_secret
from infra.network import Network

DATABASE_NAME = "agents"
DATABASE_USER = "agents"


@dataclass
class Database:
    instance: gcp.sql.DatabaseInstance
    database: gcp.sql.Database
    user: gcp.sql.User

    @property
    def url(self) -> pulumi.Output[str]:
        """The DATABASE_URL runners and the gateway use, TLS required."""
        url: pulumi.Output[str] = pulumi.Output.all(
            self.user.password, self.instance.private_ip_address
        ).apply(
            lambda parts: (
                f"postgresql://{DATABASE_USER}:{parts[0]}@{parts[1]}:5432/"
                f"{DATABASE_NAME}?sslmode=require"
            )
        )
        return as_secret(url)


def database_instance(
    name: str,
    config: StackConfig,
    network: Network,
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> gcp.sql.DatabaseInstance:
    """The primary instance: PostgreSQL 16, regional HA, private IP only, backups
    with point-in-time recovery, deletion protection in prod."""
    # lab 4.3 begin
    return gcp.sql.DatabaseInstance(
        name,
        region=config.region,
        database_version="POSTGRES_16",
        deletion_protection=config.deletion_protection,
        settings=gcp.sql.DatabaseInstanceSettingsArgs(
            tier=config.db_tier,
            edition="ENTERPRISE",
            availability_type="REGIONAL" if config.db_high_availability else "ZONAL",
            disk_autoresize=True,
            deletion_protection_enabled=config.deletion_protection,
            user_labels=labels,
            ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                ipv4_enabled=False,
                private_network=network.network.id,
                ssl_mode="ENCRYPTED_ONLY",
            ),
            backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                enabled=True,
                start_time="03:00",
                point_in_time_recovery_enabled=True,
                transaction_log_retention_days=7,
                backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                    retained_backups=14
                ),
            ),
            maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
                day=7, hour=4, update_track="stable"
            ),
            insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(
                query_insights_enabled=True
            ),
        ),
        # The private IP needs the service-networking peering, and no input of
        # the instance refers to it: without this the first `pulumi up` creates
        # both at once and the instance fails after minutes of waiting.
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[network.connection])
        ),
    )
    # lab 4.3 end


class DatabaseStack(pulumi.ComponentResource):
    """The instance, the application's database and its user."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        network: Network,
        labels: dict[str, str],
    ) -> None:
        super().__init__("agents:platform:Database", name)
        child = pulumi.ResourceOptions(parent=self)
        instance = database_instance(name, config, network, labels, child)
        database = gcp.sql.Database(
            f"{name}-db", instance=instance.name, name=DATABASE_NAME, opts=child
        )
        user = gcp.sql.User(
            f"{name}-user",
            instance=instance.name,
            name=DATABASE_USER,
            password=config.database_password,
            opts=child,
        )
        self.result = Database(instance, database, user)
        self.register_outputs({"connectionName": instance.connection_name})
