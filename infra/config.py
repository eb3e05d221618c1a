"""The stack's configuration, read and checked once, before any resource exists.

Every value comes from ``Pulumi.<stack>.yaml`` (``agents:*`` and ``gcp:*`` keys) or
from ``pulumi config set``; a wrong one stops the program with a message naming the
key, so a typo never reaches the cloud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi

ENVIRONMENTS = ("dev", "staging", "prod")
IMAGE_TAG = re.compile(r"^[0-9a-f]{7,40}$")
POOL_NAME = re.compile(r"^[a-z][a-z0-9-]{0,20}$")


def as_secret(value: pulumi.Output[str]) -> pulumi.Output[str]:
    """``value``, marked secret: Pulumi encrypts it in the state and masks it in
    every log."""
    return pulumi.Output.secret(value)


class ConfigError(ValueError):
    """A stack setting is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class RunnerPool:
    """One StatefulSet of runners, taking work from its own queues."""

    name: str
    replicas: int
    cpu: str
    memory: str
    queues: tuple[str, ...]


@dataclass(frozen=True)
class StackConfig:
    project: str
    region: str
    env: str
    tenant: str
    image_tag: str
    cluster_version: str
    db_tier: str
    db_high_availability: bool
    replica_region: str | None
    runner_pools: tuple[RunnerPool, ...]
    gateway_replicas: int
    edge_domain: str
    edge_max_instances: int
    authorized_networks: tuple[str, ...]
    admin_members: tuple[str, ...]
    database_password: pulumi.Output[str]
    openai_api_key: pulumi.Output[str]
    iap_client_id: str
    iap_client_secret: pulumi.Output[str]
    deletion_protection: bool
    namespace: str = "agents"

    def image(self, name: str) -> str:
        """An image in the stack's Artifact Registry, by git SHA: never ``latest``."""
        registry = f"{self.region}-docker.pkg.dev/{self.project}/agents"
        return f"{registry}/{name}:{self.image_tag}"


def _pools(raw: Any) -> tuple[RunnerPool, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("agents:runnerPools must be a list with at least one pool")
    pools = []
    for item in raw:
        name = str(item.get("name", ""))
        if not POOL_NAME.match(name):
            raise ConfigError(
                f"agents:runnerPools: pool name {name!r} must be lower-case letters, "
                "digits and '-', starting with a letter"
            )
        replicas = int(item.get("replicas", 2))
        if not 1 <= replicas <= 50:
            raise ConfigError(f"agents:runnerPools: {name} replicas must be 1 to 50")
        queues = tuple(str(q) for q in item.get("queues", ["agent-runs"]))
        pools.append(
            RunnerPool(
                name=name,
                replicas=replicas,
                cpu=str(item.get("cpu", "1")),
                memory=str(item.get("memory", "2Gi")),
                queues=queues,
            )
        )
    if len({p.name for p in pools}) != len(pools):
        raise ConfigError("agents:runnerPools: two pools share a name")
    return tuple(pools)


def load() -> StackConfig:
    """The current stack's settings."""
    agents = pulumi.Config("agents")
    gcp = pulumi.Config("gcp")

    env = agents.require("env")
    if env not in ENVIRONMENTS:
        raise ConfigError(
            f"agents:env is {env!r}; use one of {', '.join(ENVIRONMENTS)}"
        )
    image_tag = agents.require("imageTag")
    if not IMAGE_TAG.match(image_tag):
        raise ConfigError(
            f"agents:imageTag is {image_tag!r}: set it to the git SHA the images were "
            "built from (git rev-parse --short HEAD), never 'latest'"
        )
    cluster_version = agents.get("clusterVersion") or "1.33"
    if not re.match(r"^1\.\d{2}$", cluster_version):
        raise ConfigError("agents:clusterVersion must be a minor version like 1.33")
    region = gcp.require("region")
    replica_region = agents.get("replicaRegion") or None
    if replica_region == region:
        raise ConfigError(
            "agents:replicaRegion must differ from gcp:region: a replica in the same "
            "region survives nothing the primary's HA does not"
        )

    return StackConfig(
        project=gcp.require("project"),
        region=region,
        env=env,
        tenant=agents.get("tenant") or "shared",
        image_tag=image_tag,
        cluster_version=cluster_version,
        db_tier=agents.get("dbTier") or "db-custom-2-7680",
        db_high_availability=agents.get_bool("dbHighAvailability") is not False,
        replica_region=replica_region,
        runner_pools=_pools(agents.get_object("runnerPools") or [{"name": "default"}]),
        gateway_replicas=agents.get_int("gatewayReplicas") or 2,
        edge_domain=agents.require("edgeDomain"),
        edge_max_instances=agents.get_int("edgeMaxInstances") or 20,
        authorized_networks=tuple(agents.get_object("authorizedNetworks") or []),
        admin_members=tuple(agents.get_object("adminMembers") or []),
        database_password=agents.require_secret("databasePassword"),
        openai_api_key=agents.require_secret("openaiApiKey"),
        iap_client_id=agents.require("iapClientId"),
        iap_client_secret=agents.require_secret("iapClientSecret"),
        # On in prod unless turned off on purpose, before a `pulumi destroy`.
        deletion_protection=_flag(agents.get_bool("deletionProtection"), env == "prod"),
    )


def _flag(value: bool | None, default: bool) -> bool:
    return default if value is None else value
