"""The whole deployment, from the stack's config.

network ─┬─ private service access ── Cloud SQL (+ replica)
         └─ GKE Autopilot ── Kubernetes provider ── namespace, RBAC, runners, gateway
Artifact Registry, Secret Manager, service accounts and workload identity
Cloud Run edge ── load balancer ── Cloud Armor, IAP on /admin
"""

from __future__ import annotations

import pulumi

from infra import config as stack_config
from infra.cluster import ClusterStack
from infra.database import DatabaseStack
from infra.edge import Edge
from infra.identity import EDGE_ROLES, RUNTIME_ROLES, workload_identity
from infra.kubernetes import GATEWAY_ACCOUNT, RUNTIME_ACCOUNT, Accounts, Workloads
from infra.labels import labels as make_labels
from infra.network import NetworkStack
from infra.registry import image_repository
from infra.replica import read_replica
from infra.secrets import stored_secret


def build() -> None:
    config = stack_config.load()

    def labels(component: str) -> dict[str, str]:
        return make_labels(config.tenant, config.env, component)

    network = NetworkStack("agents", config.region, labels("network")).result
    database = DatabaseStack("agents-pg", config, network, labels("database")).result
    replica = None
    if config.replica_region:
        replica = read_replica(
            "agents-pg-replica",
            config,
            database.instance,
            network,
            labels("database-replica"),
            pulumi.ResourceOptions(),
        )
    cluster = ClusterStack("agents-gke", config, network, labels("cluster"))
    repository = image_repository(config, labels("registry"), pulumi.ResourceOptions())

    plain = pulumi.ResourceOptions()
    secrets = [
        stored_secret("DATABASE_URL", database.url, labels("secrets"), plain),
        stored_secret(
            "OPENAI_API_KEY", config.openai_api_key, labels("secrets"), plain
        ),
    ]
    runtime = workload_identity(
        "agent-runtime", config, RUNTIME_ROLES, secrets, RUNTIME_ACCOUNT, plain
    )
    gateway = workload_identity(
        "agent-gateway", config, RUNTIME_ROLES, secrets[:1], GATEWAY_ACCOUNT, plain
    )
    edge_identity = workload_identity("agent-edge", config, EDGE_ROLES, [], None, plain)

    workloads = Workloads(
        "agents",
        config,
        cluster.provider,
        Accounts(runtime=runtime.email, gateway=gateway.email),
        secrets,
    )
    edge = Edge(
        "agent-edge",
        config,
        network,
        workloads.gateway,
        edge_identity.email,
        labels("edge"),
    )

    pulumi.export("edgeAddress", edge.address.address)
    pulumi.export("edgeUrl", f"https://{config.edge_domain}")
    pulumi.export("cloudSqlInstance", database.instance.name)
    pulumi.export("cloudSqlConnection", database.instance.connection_name)
    if replica is not None:
        pulumi.export("cloudSqlReplica", replica.name)
    pulumi.export("clusterName", cluster.cluster.name)
    pulumi.export("imageRepository", repository.name)
    pulumi.export("namespace", config.namespace)
