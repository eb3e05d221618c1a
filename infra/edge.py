"""The Cloud Run edge and the external load balancer in front of it.

The edge is stateless: it checks the caller's token and quota and forwards to the
gateway's internal load balancer through the VPC (direct VPC egress, no
connector). Its ingress admits the load balancer and callers inside the
project's VPC, never the internet directly, so public traffic always passes Cloud
Armor; ``/admin/*`` goes through IAP as well.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.armor import admin_backend, security_policy
from infra.config import StackConfig
from infra.network import Network

EDGE_PORT = 8080


def gateway_address(service: k8s.core.v1.Service) -> pulumi.Output[str]:
    """The internal load balancer's IP, once GKE has given it one."""
    address: pulumi.Output[str] = service.status.apply(
        lambda status: (
            (status.load_balancer.ingress or [None])[0].ip
            if status and status.load_balancer and status.load_balancer.ingress
            else ""
        )
    )
    return address


class Edge(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        network: Network,
        gateway: k8s.core.v1.Service,
        account_email: pulumi.Input[str],
        labels: dict[str, str],
    ) -> None:
        super().__init__("agents:edge:Edge", name)
        opts = pulumi.ResourceOptions(parent=self)

        self.service = gcp.cloudrunv2.Service(
            name,
            location=config.region,
            ingress="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
            # No Cloud Run IAM check: callers come through the public load
            # balancer, and the edge is what decides who may pass.
            invoker_iam_disabled=True,
            deletion_protection=config.deletion_protection,
            labels=labels,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=account_email,
                labels=labels,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=1 if config.env == "prod" else 0,
                    max_instance_count=config.edge_max_instances,
                ),
                # Server-Sent Events and WebSockets are long requests.
                timeout="3600s",
                vpc_access=gcp.cloudrunv2.ServiceTemplateVpcAccessArgs(
                    egress="PRIVATE_RANGES_ONLY",
                    network_interfaces=[
                        gcp.cloudrunv2.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                            network=network.network.id,
                            subnetwork=network.subnet.id,
                        )
                    ],
                ),
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=config.image("agent-edge"),
                        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(
                            container_port=EDGE_PORT
                        ),
                        envs=[
                            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                                name="GATEWAY_URL",
                                value=gateway_address(gateway).apply(
                                    lambda ip: f"http://{ip}"
                                ),
                            ),
                            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                                name="LOG_FORMAT", value="json"
                            ),
                        ],
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": "1", "memory": "512Mi"}
                        ),
                    )
                ],
            ),
            opts=opts,
        )

        endpoint_group = gcp.compute.RegionNetworkEndpointGroup(
            f"{name}-neg",
            region=config.region,
            network_endpoint_type="SERVERLESS",
            cloud_run=gcp.compute.RegionNetworkEndpointGroupCloudRunArgs(
                service=self.service.name
            ),
            opts=opts,
        )
        self.policy = security_policy(f"{name}-armor", labels, opts)
        public = gcp.compute.BackendService(
            f"{name}-backend",
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTPS",
            backends=[gcp.compute.BackendServiceBackendArgs(group=endpoint_group.id)],
            security_policy=self.policy.id,
            log_config=gcp.compute.BackendServiceLogConfigArgs(enable=True),
            opts=opts,
        )
        admin = admin_backend(
            f"{name}-admin", config, endpoint_group, self.policy, opts
        )

        url_map = gcp.compute.URLMap(
            f"{name}-urls",
            default_service=public.id,
            host_rules=[
                gcp.compute.URLMapHostRuleArgs(
                    hosts=[config.edge_domain], path_matcher="edge"
                )
            ],
            path_matchers=[
                gcp.compute.URLMapPathMatcherArgs(
                    name="edge",
                    default_service=public.id,
                    path_rules=[
                        gcp.compute.URLMapPathMatcherPathRuleArgs(
                            paths=["/admin", "/admin/*"], service=admin.id
                        )
                    ],
                )
            ],
            opts=opts,
        )
        certificate = gcp.compute.ManagedSslCertificate(
            f"{name}-cert",
            managed=gcp.compute.ManagedSslCertificateManagedArgs(
                domains=[config.edge_domain]
            ),
            opts=opts,
        )
        proxy = gcp.compute.TargetHttpsProxy(
            f"{name}-https",
            url_map=url_map.id,
            ssl_certificates=[certificate.id],
            opts=opts,
        )
        self.address = gcp.compute.GlobalAddress(f"{name}-ip", labels=labels, opts=opts)
        gcp.compute.GlobalForwardingRule(
            f"{name}-443",
            target=proxy.id,
            ip_address=self.address.address,
            port_range="443",
            load_balancing_scheme="EXTERNAL_MANAGED",
            labels=labels,
            opts=opts,
        )
        self.register_outputs({"address": self.address.address})
