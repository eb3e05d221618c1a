"""Lab 4: the platform under the capstone, declared with Pulumi.

Each check runs the dev or prod stack under Pulumi's mocks with one task's
function taken from the learner's files, then reads the declared resources.
"""

from __future__ import annotations

import pytest
from infra_support import declared

from course.check import check
from infra.labels import REQUIRED
from infra.policies import private_database
from infra.testing import Graph, Resource

NETWORK = "gcp:compute/network:Network"
SUBNET = "gcp:compute/subnetwork:Subnetwork"
ADDRESS = "gcp:compute/globalAddress:GlobalAddress"
CONNECTION = "gcp:servicenetworking/connection:Connection"
SQL = "gcp:sql/databaseInstance:DatabaseInstance"
CLUSTER = "gcp:container/cluster:Cluster"


def prefix(cidr: object) -> int:
    return int(str(cidr).rpartition("/")[2] or 99)


def in_component(
    graph: Graph, resources: list[Resource], component: str, called: str
) -> None:
    """Each resource made with the opts it was given: a child of its component."""
    strays = [r.name for r in resources if component not in r.urn]
    check(
        not strays,
        called=called,
        got=f"{', '.join(strays)} outside the {component.rsplit(':', 1)[-1]} component",
        expected="every resource created with the opts passed in (merge them, "
        "never replace them): it stays a child of its component",
    )


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_a_custom_network_with_one_private_subnet() -> None:
    """vpc(name, region, opts) in the dev stack"""
    graph = declared("dev")
    networks, subnets = graph.of_type(NETWORK), graph.of_type(SUBNET)
    check(
        len(networks) == 1 and len(subnets) == 1,
        called="vpc('agents', 'us-central1', opts)",
        got=f"{len(networks)} network(s), {len(subnets)} subnet(s)",
        expected="one network and one subnet",
    )
    network, subnet = networks[0], subnets[0]
    check(
        network.props.get("autoCreateSubnetworks") is False,
        called="vpc: the network",
        got=f"autoCreateSubnetworks {network.props.get('autoCreateSubnetworks')!r}",
        expected="False: a custom-mode VPC, no subnet in every region",
    )
    check(
        subnet.props.get("region") == "us-central1"
        and graph.depends_on(subnet, network),
        called="vpc: the subnet",
        got={k: subnet.props.get(k) for k in ("region", "network")},
        expected="the stack's region, on the network just made",
    )
    check(
        subnet.props.get("privateIpGoogleAccess") is True,
        called="vpc: the subnet",
        got=f"privateIpGoogleAccess {subnet.props.get('privateIpGoogleAccess')!r}",
        expected="True: private nodes reach Google APIs (image pulls, Secret Manager)",
    )
    ranges = {
        r.get("rangeName"): r.get("ipCidrRange")
        for r in subnet.props.get("secondaryIpRanges") or []
    }
    check(
        set(ranges) == {"pods", "services"},
        called="vpc: the subnet's secondary ranges",
        got=ranges,
        expected="two ranges named pods and services, for the cluster",
    )
    check(
        prefix(ranges["pods"]) < prefix(ranges["services"]),
        called="vpc: the subnet's secondary ranges",
        got=ranges,
        expected="the pods range the larger one (every pod takes an address; "
        "services are few): PODS_RANGE for pods, SERVICES_RANGE for services",
    )
    in_component(graph, [network, subnet], "agents:platform:Network", "vpc")


# Task 2 ----------------------------------------------------------------------


@pytest.mark.task(2)
def test_private_service_access_reserves_a_range_and_peers() -> None:
    """private_service_access(name, network, labels, opts)"""
    graph = declared("dev")
    network = graph.one(NETWORK)
    ranges = [
        a for a in graph.of_type(ADDRESS) if a.props.get("purpose") == "VPC_PEERING"
    ]
    check(
        len(ranges) == 1,
        called="private_service_access(name, network, labels, opts)",
        got=f"{len(ranges)} GlobalAddress(es) with purpose VPC_PEERING",
        expected="one reserved range for Google's managed services",
    )
    reserved = ranges[0]
    prefix = reserved.props.get("prefixLength") or 0
    check(
        reserved.props.get("addressType") == "INTERNAL"
        and 8 <= prefix <= 20
        and graph.depends_on(reserved, network),
        called="private_service_access: the reserved range",
        got={k: reserved.props.get(k) for k in ("addressType", "prefixLength")},
        expected="INTERNAL, on the VPC, a /16 (at least a /20: Cloud SQL and "
        "other services carve their subnets from it)",
    )
    connections = graph.of_type(CONNECTION)
    check(
        len(connections) == 1,
        called="private_service_access",
        got=f"{len(connections)} servicenetworking connection(s)",
        expected="one Connection",
    )
    connection = connections[0]
    check(
        connection.props.get("service") == "servicenetworking.googleapis.com"
        and connection.props.get("reservedPeeringRanges") == [reserved.name]
        and graph.depends_on(connection, network),
        called="private_service_access: the connection",
        got={k: connection.props.get(k) for k in ("service", "reservedPeeringRanges")},
        expected="service servicenetworking.googleapis.com, reserving that range, "
        "on the VPC",
    )
    in_component(
        graph,
        [reserved, connection],
        "agents:platform:Network",
        "private_service_access",
    )
    check(
        all((reserved.props.get("labels") or {}).get(k) for k in REQUIRED),
        called="private_service_access: the reserved range's labels",
        got=reserved.props.get("labels"),
        expected=f"the labels given ({', '.join(REQUIRED)})",
    )


# Task 3 ----------------------------------------------------------------------


@pytest.mark.task(3)
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cloud_sql_is_private_regional_and_recoverable(stack: str) -> None:
    """database_instance(name, config, network, labels, opts)"""
    graph = declared(stack)
    instance = graph.one(SQL, "agents-pg")
    settings = instance.props.get("settings") or {}
    called = f"database_instance in the {stack} stack"
    check(
        instance.props.get("databaseVersion") == "POSTGRES_16"
        and instance.props.get("region") == "us-central1",
        called=called,
        got={k: instance.props.get(k) for k in ("databaseVersion", "region")},
        expected="POSTGRES_16 in the stack's region",
    )
    problems = private_database(SQL, instance.props)
    check(
        not problems,
        called=called,
        got=f"ipConfiguration {settings.get('ipConfiguration')}",
        expected="no public IP (ipv4_enabled False), a private IP on the VPC",
    )
    check(
        settings.get("availabilityType") == "REGIONAL",
        called=called,
        got=f"availabilityType {settings.get('availabilityType')!r}",
        expected="REGIONAL: a standby in a second zone takes over by itself",
    )
    backups = settings.get("backupConfiguration") or {}
    check(
        backups.get("enabled") is True
        and backups.get("pointInTimeRecoveryEnabled") is True,
        called=called,
        got=backups,
        expected="backups enabled with point-in-time recovery",
    )
    check(
        instance.props.get("deletionProtection") is (stack == "prod"),
        called=called,
        got=f"deletionProtection {instance.props.get('deletionProtection')!r}",
        expected=f"deletion protection {'on' if stack == 'prod' else 'off'} in {stack}",
    )
    labels = settings.get("userLabels") or {}
    check(
        all(labels.get(k) for k in REQUIRED),
        called=called,
        got=f"userLabels {labels}",
        expected=f"the labels given ({', '.join(REQUIRED)})",
    )


@pytest.mark.task(3)
def test_high_availability_follows_the_config() -> None:
    """database_instance with agents:dbHighAvailability false"""
    graph = declared("dev", **{"agents:dbHighAvailability": False})
    instance = graph.one(SQL, "agents-pg")
    availability = (instance.props.get("settings") or {}).get("availabilityType")
    check(
        availability == "ZONAL",
        called="database_instance in a stack with agents:dbHighAvailability false",
        got=f"availabilityType {availability!r}",
        expected="ZONAL: config.db_high_availability decides, not the code",
    )
    in_component(graph, [instance], "agents:platform:Database", "database_instance")


@pytest.mark.task(3)
def test_cloud_sql_waits_for_the_peering() -> None:
    """database_instance: what it depends on"""
    graph = declared("dev")
    instance = graph.one(SQL, "agents-pg")
    connection = graph.one(CONNECTION)
    check(
        graph.explicitly_depends_on(instance, connection),
        called="database_instance(...): its resource options",
        got="depends_on "
        + str(sorted(u.rsplit("::", 1)[-1] for u in instance.explicit_dependencies)),
        expected="depends_on the servicenetworking Connection: no input of the "
        "instance refers to it, so Pulumi cannot infer the order",
        hint="merge the opts you are given with ResourceOptions(depends_on=[...])",
    )


# Task 4 ----------------------------------------------------------------------


@pytest.mark.task(4)
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_an_autopilot_cluster_with_private_nodes(stack: str) -> None:
    """autopilot_cluster(name, config, network, labels, opts)"""
    graph = declared(stack)
    cluster = graph.one(CLUSTER)
    props = cluster.props
    called = f"autopilot_cluster in the {stack} stack"
    check(
        props.get("enableAutopilot") is True and props.get("location") == "us-central1",
        called=called,
        got={k: props.get(k) for k in ("enableAutopilot", "location")},
        expected="Autopilot, regional, in the stack's region",
    )
    private = props.get("privateClusterConfig") or {}
    check(
        private.get("enablePrivateNodes") is True,
        called=called,
        got=f"privateClusterConfig {private}",
        expected="private nodes: no node has a public IP",
    )
    channel = (props.get("releaseChannel") or {}).get("channel")
    check(
        channel in ("REGULAR", "STABLE") and props.get("minMasterVersion") == "1.33",
        called=called,
        got=f"release channel {channel!r}, minMasterVersion "
        f"{props.get('minMasterVersion')!r}",
        expected="a pinned release channel (REGULAR or STABLE) and the config's "
        "clusterVersion, the version the manifests are validated against",
    )
    policy = props.get("ipAllocationPolicy") or {}
    check(
        policy.get("clusterSecondaryRangeName") == "pods"
        and policy.get("servicesSecondaryRangeName") == "services"
        and graph.depends_on(cluster, graph.one(SUBNET)),
        called=called,
        got=f"ipAllocationPolicy {policy}, subnetwork {props.get('subnetwork')!r}",
        expected="the stack's subnet, pods and services from its secondary ranges",
    )
    in_component(graph, [cluster], "agents:platform:Cluster", called)
    labels = props.get("resourceLabels") or {}
    check(
        all(labels.get(k) for k in REQUIRED)
        and props.get("deletionProtection") is (stack == "prod"),
        called=called,
        got=f"resourceLabels {labels}, deletionProtection "
        f"{props.get('deletionProtection')!r}",
        expected=f"the labels given; deletion protection "
        f"{'on' if stack == 'prod' else 'off'} in {stack}",
    )
