"""GKE Autopilot: where the runners and the gateway run as long-lived pods.

Private nodes (no public IPs), a pinned release channel and minimum version,
workload identity (always on in Autopilot). The Kubernetes provider is built from
this cluster's own endpoint and certificate, and every Kubernetes object names it
explicitly: an object that fell back to the ambient kubeconfig would land on
whatever cluster the deploying machine points at.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.config import StackConfig, as_secret
from infra.network import PODS_RANGE, SERVICES_RANGE, Network

CONTROL_PLANE_RANGE = "172.16.0.32/28"


def autopilot_cluster(
    name: str,
    config: StackConfig,
    network: Network,
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> gcp.container.Cluster:
    """A regional Autopilot cluster with private nodes on the stack's subnet."""
    # lab 4.4 begin
    return gcp.container.Cluster(
        name,
        location=config.region,
        enable_autopilot=True,
        network=network.network.id,
        subnetwork=network.subnet.id,
        min_master_version=config.cluster_version,
        release_channel=gcp.container.ClusterReleaseChannelArgs(channel="REGULAR"),
        ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
            cluster_secondary_range_name=PODS_RANGE[0],
            services_secondary_range_name=SERVICES_RANGE[0],
        ),
        private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
            enable_private_nodes=True,
            enable_private_endpoint=False,
            master_ipv4_cidr_block=CONTROL_PLANE_RANGE,
        ),
        # Only these networks reach the control plane; none listed leaves it open
        # to any address (still behind Google sign-in and RBAC).
        master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
            cidr_blocks=[
                gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                    cidr_block=cidr, display_name=f"admin-{index}"
                )
                for index, cidr in enumerate(config.authorized_networks)
            ]
        )
        if config.authorized_networks
        else None,
        resource_labels=labels,
        deletion_protection=config.deletion_protection,
        opts=opts,
    )
    # lab 4.4 end


def kubeconfig(cluster: gcp.container.Cluster) -> pulumi.Output[str]:
    """A kubeconfig for this cluster that authenticates with the caller's gcloud
    credentials (the gke-gcloud-auth-plugin), so no key is written anywhere."""

    def render(parts: list[str]) -> str:
        name, endpoint, certificate = parts
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": f"https://{endpoint}",
                        "certificate-authority-data": certificate,
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                            "installHint": "gcloud components install "
                            "gke-gcloud-auth-plugin",
                        }
                    },
                }
            ],
        }
        return json.dumps(config)

    return pulumi.Output.all(
        cluster.name, cluster.endpoint, cluster.master_auth.cluster_ca_certificate
    ).apply(render)


class ClusterStack(pulumi.ComponentResource):
    """The cluster and the Kubernetes provider built from it."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        network: Network,
        labels: dict[str, str],
    ) -> None:
        super().__init__("agents:platform:Cluster", name)
        child = pulumi.ResourceOptions(parent=self)
        self.cluster = autopilot_cluster(name, config, network, labels, child)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=as_secret(kubeconfig(self.cluster)),
            enable_server_side_apply=True,
            opts=child,
        )
        self.register_outputs({"endpoint": self.cluster.endpoint})
