"""The stack's configuration, read and checked once, before any resource exists.

Every value comes from ``Pulumi.<stack>.yaml`` (``agents:*`` and ``gcp:*`` keys) or
from ``pulumi config set``; a wrong one stops the program with a message naming the
key, so a typo never reaches the cloud.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import pulumi

ENVIRONMENTS = ("dev", "staging", "prod")
IMAGE_TAG = re.compile(r"^[0-9a-f]{7,40}$")
POOL_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,19}[a-z0-9])?$")


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


POOL_KEYS = {"name", "replicas", "cpu", "memory", "queues"}
CPU = re.compile(r"^\d+(\.\d+)?m?$")
MEMORY = re.compile(r"^\d+(Ki|Mi|Gi|Ti)$")
REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
MEMBER_KINDS = ("user:", "group:", "serviceAccount:", "domain:")


def _pools(raw: Any) -> tuple[RunnerPool, ...]:
    key = "agents:runnerPools"
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{key} must be a list with at least one pool")
    pools = []
    for item in raw:
        if not isinstance(item, dict):
            raise ConfigError(f"{key}: each pool is a mapping, got {item!r}")
        unknown = sorted(set(item) - POOL_KEYS)
        if unknown:
            raise ConfigError(
                f"{key}: unknown setting(s) {', '.join(unknown)}; a pool takes "
                f"{', '.join(sorted(POOL_KEYS))}"
            )
        name = item.get("name")
        if not isinstance(name, str) or not POOL_NAME.match(name):
            raise ConfigError(
                f"{key}: pool name {name!r} must be lower-case letters, digits and "
                "'-', starting with a letter and not ending with '-'"
            )
        replicas = item.get("replicas", 2)
        if type(replicas) is not int or not 1 <= replicas <= 50:
            raise ConfigError(f"{key}: {name} replicas must be a whole number, 1 to 50")
        cpu, memory = str(item.get("cpu", "1")), str(item.get("memory", "2Gi"))
        if not CPU.match(cpu):
            raise ConfigError(
                f"{key}: {name} cpu {cpu!r} is not a CPU quantity (1, 500m)"
            )
        if not MEMORY.match(memory):
            raise ConfigError(
                f"{key}: {name} memory {memory!r} is not a memory quantity (2Gi, 512Mi)"
            )
        queues = item.get("queues", ["agent-runs"])
        if (
            not isinstance(queues, list)
            or not queues
            or not all(isinstance(q, str) and q for q in queues)
        ):
            raise ConfigError(f"{key}: {name} queues must be a list of queue names")
        pools.append(RunnerPool(name, replicas, cpu, memory, tuple(queues)))
    if len({p.name for p in pools}) != len(pools):
        raise ConfigError(f"{key}: two pools share a name")
    return tuple(pools)


def _count(agents: pulumi.Config, key: str, default: int) -> int:
    value = agents.get_int(key)
    if value is None:
        return default
    if value < 1:
        raise ConfigError(f"agents:{key} must be 1 or more, got {value}")
    return value


def _region(value: str, key: str) -> str:
    if not REGION.match(value):
        raise ConfigError(f"{key} {value!r} is not a region name like us-central1")
    return value


def _networks(raw: Any) -> tuple[str, ...]:
    key = "agents:authorizedNetworks"
    if not isinstance(raw, list):
        raise ConfigError(f"{key} must be a list of CIDR ranges")
    for cidr in raw:
        try:
            network = ipaddress.ip_network(str(cidr))
        except ValueError:
            raise ConfigError(f"{key}: {cidr!r} is not a CIDR range") from None
        if network.prefixlen == 0:
            raise ConfigError(
                f"{key}: {cidr} admits every address; leave the list empty instead"
            )
    return tuple(str(c) for c in raw)


def _members(raw: Any) -> tuple[str, ...]:
    key = "agents:adminMembers"
    if not isinstance(raw, list):
        raise ConfigError(f"{key} must be a list like ['group:oncall@example.com']")
    for member in raw:
        if not str(member).startswith(MEMBER_KINDS):
            raise ConfigError(
                f"{key}: {member!r} needs its kind: {', '.join(MEMBER_KINDS)}"
            )
    return tuple(str(m) for m in raw)


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
            "built from, in lower-case hex (git rev-parse --short HEAD), never 'latest'"
        )
    cluster_version = agents.get("clusterVersion") or "1.33"
    if not re.match(r"^1\.\d{2}$", cluster_version):
        raise ConfigError("agents:clusterVersion must be a minor version like 1.33")
    region = _region(gcp.require("region"), "gcp:region")
    replica_region = agents.get("replicaRegion") or None
    if replica_region is not None:
        _region(replica_region, "agents:replicaRegion")
    if replica_region == region:
        raise ConfigError(
            "agents:replicaRegion must differ from gcp:region: a replica in the same "
            "region survives nothing the primary's HA does not"
        )

    edge_domain = agents.require("edgeDomain")
    if not HOSTNAME.match(edge_domain):
        raise ConfigError(
            f"agents:edgeDomain {edge_domain!r} must be a host name like "
            "agents.example.com (no scheme, no path)"
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
        runner_pools=_pools(_object(agents, "runnerPools", [{"name": "default"}])),
        gateway_replicas=_count(agents, "gatewayReplicas", 2),
        edge_domain=edge_domain,
        edge_max_instances=_count(agents, "edgeMaxInstances", 20),
        authorized_networks=_networks(_object(agents, "authorizedNetworks", [])),
        admin_members=_members(_object(agents, "adminMembers", [])),
        database_password=agents.require_secret("databasePassword"),
        openai_api_key=agents.require_secret("openaiApiKey"),
        iap_client_id=agents.require("iapClientId"),
        iap_client_secret=agents.require_secret("iapClientSecret"),
        # On in prod unless turned off on purpose, before a `pulumi destroy`.
        deletion_protection=_flag(agents.get_bool("deletionProtection"), env == "prod"),
    )


def _flag(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _object(agents: pulumi.Config, key: str, default: Any) -> Any:
    value = agents.get_object(key)
    return default if value is None else value
