"""The GCP resources each stack declares: network, database, cluster, registry,
secrets, identities, the edge and its protections."""

from __future__ import annotations

import pytest

from infra.config import ConfigError
from infra.stack import build
from infra.testing import Graph, run, stack_settings

SQL = "gcp:sql/databaseInstance:DatabaseInstance"
CONNECTION = "gcp:servicenetworking/connection:Connection"


def test_network_is_custom_with_private_google_access(dev: Graph) -> None:
    network = dev.one("gcp:compute/network:Network")
    assert network.props["autoCreateSubnetworks"] is False
    subnet = dev.one("gcp:compute/subnetwork:Subnetwork")
    assert subnet.props["privateIpGoogleAccess"] is True
    ranges = {r["rangeName"] for r in subnet.props["secondaryIpRanges"]}
    assert ranges == {"pods", "services"}
    assert dev.depends_on(subnet, network)
    dev.one("gcp:compute/routerNat:RouterNat")


def test_private_service_access_reserves_a_range_for_the_peering(dev: Graph) -> None:
    reserved = dev.one(
        "gcp:compute/globalAddress:GlobalAddress", "agents-services-range"
    )
    assert reserved.props["purpose"] == "VPC_PEERING"
    assert reserved.props["prefixLength"] == 16
    connection = dev.one(CONNECTION)
    assert connection.props["service"] == "servicenetworking.googleapis.com"
    assert connection.props["reservedPeeringRanges"] == [reserved.name]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_database_is_private_regional_and_recoverable(
    graphs: dict[str, Graph], stack: str
) -> None:
    graph = graphs[stack]
    instance = graph.one(SQL, "agents-pg")
    settings = instance.props["settings"]
    assert instance.props["databaseVersion"] == "POSTGRES_16"
    assert settings["availabilityType"] == "REGIONAL"
    ip = settings["ipConfiguration"]
    assert ip["ipv4Enabled"] is False, "the database must have no public IP"
    assert ip["privateNetwork"]
    backups = settings["backupConfiguration"]
    assert backups["enabled"] is True
    assert backups["pointInTimeRecoveryEnabled"] is True
    assert instance.props["deletionProtection"] is (stack == "prod")
    assert settings["deletionProtectionEnabled"] is (stack == "prod")


def test_prod_deletion_protection_can_be_turned_off_for_a_teardown() -> None:
    graph = run(
        build, stack_settings("prod", **{"agents:deletionProtection": False}), "prod"
    )
    protected = [
        r.name for r in graph.resources if r.props.get("deletionProtection") is True
    ]
    assert protected == []


def test_database_waits_for_the_service_networking_connection(dev: Graph) -> None:
    instance = dev.one(SQL, "agents-pg")
    connection = dev.one(CONNECTION)
    # Explicit: no input of the instance refers to the connection.
    assert dev.explicitly_depends_on(instance, connection), (
        "Cloud SQL must name the service-networking connection in depends_on"
    )


def test_the_replica_is_in_another_region_and_private(prod: Graph, dev: Graph) -> None:
    assert dev.find(SQL, "agents-pg-replica") is None
    primary = prod.one(SQL, "agents-pg")
    replica = prod.one(SQL, "agents-pg-replica")
    assert replica.props["region"] != primary.props["region"]
    assert replica.props["masterInstanceName"] == primary.name
    assert replica.props["replicaConfiguration"]["failoverTarget"] is False
    assert replica.props["settings"]["ipConfiguration"]["ipv4Enabled"] is False
    assert replica.props["deletionProtection"] is True
    connection = prod.one(CONNECTION)
    assert prod.explicitly_depends_on(replica, connection)


def test_cluster_is_autopilot_with_private_nodes_on_a_pinned_channel(
    dev: Graph,
) -> None:
    cluster = dev.one("gcp:container/cluster:Cluster")
    assert cluster.props["enableAutopilot"] is True
    assert cluster.props["privateClusterConfig"]["enablePrivateNodes"] is True
    assert cluster.props["releaseChannel"]["channel"] == "REGULAR"
    assert cluster.props["minMasterVersion"] == "1.33"
    policy = cluster.props["ipAllocationPolicy"]
    assert (
        policy["clusterSecondaryRangeName"],
        policy["servicesSecondaryRangeName"],
    ) == (
        "pods",
        "services",
    )


def test_registry_keeps_image_tags_immutable(dev: Graph) -> None:
    repository = dev.one("gcp:artifactregistry/repository:Repository")
    assert repository.props["format"] == "DOCKER"
    assert repository.props["dockerConfig"]["immutableTags"] is True


def test_secrets_live_in_secret_manager_and_are_projected(dev: Graph) -> None:
    secrets = {
        s.props["secretId"] for s in dev.of_type("gcp:secretmanager/secret:Secret")
    }
    assert secrets == {"database-url", "openai-api-key"}
    assert len(dev.of_type("gcp:secretmanager/secretVersion:SecretVersion")) == 2
    projected = dev.one("kubernetes:core/v1:Secret")
    data = projected.props["stringData"]
    assert set(data) == {"DATABASE_URL", "OPENAI_API_KEY"}
    assert data["DATABASE_URL"].startswith("postgresql://agents:")
    assert "@10.90.0.3:5432/agents?sslmode=require" in data["DATABASE_URL"]


def test_workload_identity_binds_each_kubernetes_account(dev: Graph) -> None:
    bindings = {
        b.props["member"]: b
        for b in dev.of_type("gcp:serviceaccount/iAMMember:IAMMember")
    }
    for account in ("agent-runtime", "agent-gateway"):
        member = f"serviceAccount:agents-course-dev.svc.id.goog[agents/{account}]"
        assert bindings[member].props["role"] == "roles/iam.workloadIdentityUser"
        ksa = dev.one("kubernetes:core/v1:ServiceAccount", account)
        email = ksa.props["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert email == f"{account}@mock-project.iam.gserviceaccount.com"


def test_roles_are_least_privilege(dev: Graph) -> None:
    roles = {r.props["role"] for r in dev.of_type("gcp:projects/iAMMember:IAMMember")}
    assert roles <= {
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
        "roles/cloudtrace.agent",
    }
    # Secrets are readable per secret, never project-wide.
    per_secret = dev.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {r.props["role"] for r in per_secret} == {
        "roles/secretmanager.secretAccessor"
    }
    edge_reads = [r for r in per_secret if "agent-edge" in r.props["member"]]
    assert edge_reads == [], "the edge reads no secret"


def test_edge_is_reached_only_through_the_load_balancer(dev: Graph) -> None:
    service = dev.one("gcp:cloudrunv2/service:Service")
    assert service.props["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    access = service.props["template"]["vpcAccess"]
    assert access["networkInterfaces"][0]["network"]
    assert access["egress"] == "PRIVATE_RANGES_ONLY"
    envs = {
        e["name"]: e.get("value")
        for e in service.props["template"]["containers"][0]["envs"]
    }
    assert envs["GATEWAY_URL"] == "http://10.42.0.50"
    neg = dev.one("gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup")
    assert neg.props["networkEndpointType"] == "SERVERLESS"


def test_cloud_armor_guards_every_backend(dev: Graph) -> None:
    policy = dev.one("gcp:compute/securityPolicy:SecurityPolicy")
    rules = {r["priority"]: r for r in policy.props["rules"]}
    assert "sqli" in rules[1000]["match"]["expr"]["expression"]
    assert rules[1000]["action"].startswith("deny")
    ban = rules[2000]["rateLimitOptions"]
    assert rules[2000]["action"] == "rate_based_ban"
    assert (ban["enforceOnKey"], ban["enforceOnKeyName"]) == (
        "HTTP_HEADER",
        "x-tenant-id",
    )
    assert rules[2000]["match"]["expr"]["expression"] == (
        "has(request.headers['x-tenant-id'])"
    )
    # Callers without the header are throttled per IP, never under one shared key.
    assert rules[2100]["action"] == "throttle"
    assert rules[2100]["rateLimitOptions"]["enforceOnKey"] == "IP"
    assert rules[2100]["match"]["expr"]["expression"].startswith("!has(")
    assert rules[2147483647]["action"] == "allow"
    backends = dev.of_type("gcp:compute/backendService:BackendService")
    assert len(backends) == 2
    for backend in backends:
        assert dev.depends_on(backend, policy), f"{backend.name} has no security policy"
    admin = dev.one("gcp:compute/backendService:BackendService", "agent-edge-admin")
    assert admin.props["iap"]["enabled"] is True
    url_map = dev.one("gcp:compute/uRLMap:URLMap")
    rule = url_map.props["pathMatchers"][0]["pathRules"][0]
    assert "/admin/*" in rule["paths"]
    assert dev.depends_on(url_map, admin)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("agents:imageTag", "latest", "agents:imageTag"),
        ("agents:env", "production", "agents:env"),
        ("agents:replicaRegion", "us-central1", "agents:replicaRegion"),
        ("agents:runnerPools", [{"name": "Default"}], "agents:runnerPools"),
        ("agents:runnerPools", [], "at least one pool"),
        ("agents:runnerPools", [{"name": "default-"}], "not ending with"),
        ("agents:runnerPools", [{"name": "a", "replica": 5}], "unknown setting"),
        ("agents:runnerPools", [{"name": "a", "replicas": "three"}], "whole number"),
        ("agents:runnerPools", [{"name": "a", "replicas": 2.7}], "whole number"),
        ("agents:runnerPools", [{"name": "a", "cpu": "lots"}], "CPU quantity"),
        ("agents:runnerPools", [{"name": "a", "memory": "2 GB"}], "memory quantity"),
        ("agents:runnerPools", [{"name": "a", "queues": "agent-runs"}], "queue names"),
        ("agents:gatewayReplicas", 0, "agents:gatewayReplicas"),
        ("agents:edgeMaxInstances", -1, "agents:edgeMaxInstances"),
        ("agents:replicaRegion", "Mars-North1", "agents:replicaRegion"),
        ("agents:authorizedNetworks", ["not-a-cidr"], "not a CIDR"),
        ("agents:authorizedNetworks", ["0.0.0.0/0"], "every address"),
        ("agents:adminMembers", ["alice@example.com"], "needs its kind"),
        ("agents:edgeDomain", "https://agents.example.com/", "agents:edgeDomain"),
        ("agents:imageTag", "3F9C2AB", "lower-case"),
    ],
)
def test_a_wrong_setting_stops_the_program_naming_it(
    key: str, value: object, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        run(build, stack_settings("dev", **{key: value}))


def test_a_missing_secret_stops_the_program() -> None:
    with pytest.raises(Exception, match="databasePassword"):
        run(build, stack_settings("dev", **{"agents:databasePassword": None}))
