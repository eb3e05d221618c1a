"""The VPC everything private lives in, and the peering Cloud SQL's private IP
needs.

Cloud SQL sits in a network Google runs; private service access peers it with ours
through a reserved address range. The instance cannot be created until that
peering exists, and nothing in its inputs says so: the database must name the
connection in ``depends_on`` (see ``database.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

SUBNET_RANGE = "10.42.0.0/20"
PODS_RANGE = ("pods", "10.44.0.0/14")
SERVICES_RANGE = ("services", "10.48.0.0/20")


@dataclass
class Network:
    network: gcp.compute.Network
    subnet: gcp.compute.Subnetwork
    peering_range: gcp.compute.GlobalAddress
    connection: gcp.servicenetworking.Connection


def vpc(
    name: str, region: str, opts: pulumi.ResourceOptions
) -> tuple[gcp.compute.Network, gcp.compute.Subnetwork]:
    """A custom-mode VPC and one regional subnet with ranges for GKE's pods and
    services, reaching Google APIs without public IPs."""
    network = gcp.compute.Network(
        name,
        auto_create_subnetworks=False,
        routing_mode="REGIONAL",
        opts=opts,
    )
    subnet = gcp.compute.Subnetwork(
        f"{name}-{region}",
        region=region,
        network=network.id,
        ip_cidr_range=SUBNET_RANGE,
        private_ip_google_access=True,
        secondary_ip_ranges=[
            gcp.compute.SubnetworkSecondaryIpRangeArgs(
                range_name=PODS_RANGE[0], ip_cidr_range=PODS_RANGE[1]
            ),
            gcp.compute.SubnetworkSecondaryIpRangeArgs(
                range_name=SERVICES_RANGE[0], ip_cidr_range=SERVICES_RANGE[1]
            ),
        ],
        opts=opts,
    )
    return network, subnet


def private_service_access(
    name: str,
    network: gcp.compute.Network,
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> tuple[gcp.compute.GlobalAddress, gcp.servicenetworking.Connection]:
    """A /16 reserved for Google's managed services, and the peering that uses it."""
    peering_range = gcp.compute.GlobalAddress(
        f"{name}-services-range",
        purpose="VPC_PEERING",
        address_type="INTERNAL",
        prefix_length=16,
        network=network.id,
        labels=labels,
        opts=opts,
    )
    connection = gcp.servicenetworking.Connection(
        f"{name}-services",
        network=network.id,
        service="servicenetworking.googleapis.com",
        reserved_peering_ranges=[peering_range.name],
        opts=opts,
    )
    return peering_range, connection


def egress(
    name: str,
    region: str,
    network: gcp.compute.Network,
    opts: pulumi.ResourceOptions,
) -> gcp.compute.RouterNat:
    """Cloud NAT: private nodes reach the model provider without public IPs."""
    router = gcp.compute.Router(
        f"{name}-router", region=region, network=network.id, opts=opts
    )
    return gcp.compute.RouterNat(
        f"{name}-nat",
        router=router.name,
        region=region,
        nat_ip_allocate_option="AUTO_ONLY",
        source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
        log_config=gcp.compute.RouterNatLogConfigArgs(
            enable=True, filter="ERRORS_ONLY"
        ),
        opts=opts,
    )


class NetworkStack(pulumi.ComponentResource):
    """VPC, subnet, private service access and NAT, as one component."""

    def __init__(self, name: str, region: str, labels: dict[str, str]) -> None:
        super().__init__("agents:platform:Network", name)
        child = pulumi.ResourceOptions(parent=self)
        network, subnet = vpc(name, region, child)
        peering_range, connection = private_service_access(name, network, labels, child)
        egress(name, region, network, child)
        self.result = Network(network, subnet, peering_range, connection)
        self.register_outputs({"network": network.id, "subnet": subnet.id})
