"""The Kubernetes objects: what runs where inside the cluster.

Runners are a StatefulSet per pool, never bare pods or a Deployment: a StatefulSet
gives each pod a stable name (``agent-runtime-default-0``) and DNS entry through a
headless Service, and the runner uses that name as its DBOS executor id, so a
restarted pod finds its own unfinished runs. The gateway is stateless: a
Deployment behind an internal load balancer that the Cloud Run edge reaches
through the VPC.

Every object here is created through the cluster's explicit provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core import v1 as core

from infra.config import RunnerPool, StackConfig
from infra.labels import labels as make_labels
from infra.secrets import StoredSecret

RUNTIME_PORT = 8081
GATEWAY_PORT = 8080
SECRET_NAME = "agent-runtime-secrets"
RUNTIME_ACCOUNT = "agent-runtime"
GATEWAY_ACCOUNT = "agent-gateway"
GRACE_SECONDS = 60
PRESTOP_SECONDS = 10

Meta = k8s.meta.v1.ObjectMetaArgs


@dataclass(frozen=True)
class Placement:
    """Where a pool's objects go and what they carry."""

    namespace: str
    pool: RunnerPool
    image: str
    labels: dict[str, str]

    @property
    def name(self) -> str:
        return f"agent-runtime-{self.pool.name}"

    @property
    def selector(self) -> dict[str, str]:
        return {"workload": "agent-runtime", "pool": self.pool.name}


def headless_service(
    placement: Placement, opts: pulumi.ResourceOptions
) -> core.Service:
    """The Service that gives each runner pod its own DNS name
    (``POD.SERVICE.NAMESPACE.svc.cluster.local``) and no load-balanced address."""
    return core.Service(
        f"{placement.name}-pods",
        metadata=Meta(
            name=placement.name,
            namespace=placement.namespace,
            labels={**placement.labels, **placement.selector},
        ),
        spec=core.ServiceSpecArgs(
            cluster_ip="None",
            selector=placement.selector,
            publish_not_ready_addresses=True,
            ports=[
                core.ServicePortArgs(name="http", port=RUNTIME_PORT, target_port="http")
            ],
        ),
        opts=opts,
    )


def runner_env(placement: Placement) -> list[core.EnvVarArgs]:
    """The runner's environment: its pod name from the downward API (the DBOS
    executor id), secrets by reference, and where to listen."""
    secret_env = [
        core.EnvVarArgs(
            name=env_name,
            value_from=core.EnvVarSourceArgs(
                secret_key_ref=core.SecretKeySelectorArgs(
                    name=SECRET_NAME, key=env_name
                )
            ),
        )
        for env_name in ("DATABASE_URL", "OPENAI_API_KEY")
    ]
    return [
        core.EnvVarArgs(
            name="POD_NAME",
            value_from=core.EnvVarSourceArgs(
                field_ref=core.ObjectFieldSelectorArgs(field_path="metadata.name")
            ),
        ),
        *secret_env,
        core.EnvVarArgs(name="APP_ENV", value="production"),
        core.EnvVarArgs(name="LOG_FORMAT", value="json"),
        core.EnvVarArgs(name="RUNTIME_HOST", value="0.0.0.0"),
        core.EnvVarArgs(name="RUNTIME_PORT", value=str(RUNTIME_PORT)),
        core.EnvVarArgs(
            name="RUNNER_QUEUES", value=json.dumps(list(placement.pool.queues))
        ),
    ]


def runner_probes() -> dict[str, core.ProbeArgs]:
    """Startup, readiness and liveness probes on the runner's HTTP port.

    ``/healthz`` says the process is up; ``/readyz`` says it can take work (its
    database answers, its queues are polled). Startup allows a slow first boot
    before liveness may restart the pod.
    """

    def probe(path: str, period: int, failures: int) -> core.ProbeArgs:
        return core.ProbeArgs(
            http_get=core.HTTPGetActionArgs(path=path, port="http"),
            period_seconds=period,
            failure_threshold=failures,
            timeout_seconds=2,
        )

    return {
        "startup_probe": probe("/healthz", 2, 30),
        "readiness_probe": probe("/readyz", 5, 2),
        "liveness_probe": probe("/healthz", 10, 3),
    }


def pause_before_stop() -> core.LifecycleArgs:
    """A preStop pause. SIGTERM waits for it: time for the pod's removal to reach
    every endpoint list before the process starts shutting down."""
    return core.LifecycleArgs(
        pre_stop=core.LifecycleHandlerArgs(
            exec_=core.ExecActionArgs(
                command=["/bin/sh", "-c", f"sleep {PRESTOP_SECONDS}"]
            )
        )
    )


def unprivileged() -> core.SecurityContextArgs:
    """A container that runs as a non-root user and can gain nothing more."""
    return core.SecurityContextArgs(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        capabilities=core.CapabilitiesArgs(drop=["ALL"]),
    )


def unprivileged_pod() -> core.PodSecurityContextArgs:
    return core.PodSecurityContextArgs(
        run_as_non_root=True,
        seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
    )


def runner_statefulset(
    placement: Placement, service: core.Service, opts: pulumi.ResourceOptions
) -> k8s.apps.v1.StatefulSet:
    """The pool's runners: stable names under the headless Service, one internal
    port, memory requests equal to limits, time to finish a step on shutdown."""
    pool = placement.pool
    resources = {"cpu": pool.cpu, "memory": pool.memory}
    container = core.ContainerArgs(
        name="runtime",
        image=placement.image,
        ports=[core.ContainerPortArgs(name="http", container_port=RUNTIME_PORT)],
        env=runner_env(placement),
        resources=core.ResourceRequirementsArgs(requests=resources, limits=resources),
        lifecycle=pause_before_stop(),
        security_context=unprivileged(),
        **runner_probes(),
    )
    return k8s.apps.v1.StatefulSet(
        placement.name,
        metadata=Meta(
            name=placement.name,
            namespace=placement.namespace,
            labels={**placement.labels, **placement.selector},
        ),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            service_name=service.metadata.name,
            replicas=pool.replicas,
            pod_management_policy="Parallel",
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=placement.selector),
            template=core.PodTemplateSpecArgs(
                metadata=Meta(labels={**placement.labels, **placement.selector}),
                spec=core.PodSpecArgs(
                    service_account_name=RUNTIME_ACCOUNT,
                    termination_grace_period_seconds=GRACE_SECONDS,
                    security_context=unprivileged_pod(),
                    containers=[container],
                ),
            ),
        ),
        opts=opts,
    )


def disruption_budget(
    placement: Placement, opts: pulumi.ResourceOptions
) -> k8s.policy.v1.PodDisruptionBudget:
    """At most one runner of the pool drained at a time (node upgrades, repairs)."""
    return k8s.policy.v1.PodDisruptionBudget(
        f"{placement.name}-budget",
        metadata=Meta(
            name=placement.name,
            namespace=placement.namespace,
            labels={**placement.labels, **placement.selector},
        ),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=placement.selector),
        ),
        opts=opts,
    )


def runner_pool(
    placement: Placement, opts: pulumi.ResourceOptions
) -> k8s.apps.v1.StatefulSet:
    """One pool: its headless Service, StatefulSet and disruption budget."""
    service = headless_service(placement, opts)
    statefulset = runner_statefulset(placement, service, opts)
    disruption_budget(placement, opts)
    return statefulset


@dataclass(frozen=True)
class Accounts:
    """Google service account emails the Kubernetes accounts stand for."""

    runtime: pulumi.Input[str]
    gateway: pulumi.Input[str]


class Workloads(pulumi.ComponentResource):
    """Namespace, accounts, RBAC, the secret projection, the runner pools and the
    gateway, all through ``provider``."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        provider: k8s.Provider,
        accounts: Accounts,
        secrets: list[StoredSecret],
    ) -> None:
        super().__init__("agents:kubernetes:Workloads", name)
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        ns = config.namespace

        def labels(component: str) -> dict[str, str]:
            return make_labels(config.tenant, config.env, component)

        namespace = core.Namespace(
            "namespace", metadata=Meta(name=ns, labels=labels("namespace")), opts=opts
        )
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[namespace])
        )
        for account, email in (
            (RUNTIME_ACCOUNT, accounts.runtime),
            (GATEWAY_ACCOUNT, accounts.gateway),
        ):
            core.ServiceAccount(
                account,
                metadata=Meta(
                    name=account,
                    namespace=ns,
                    labels=labels(account),
                    annotations={"iam.gke.io/gcp-service-account": email},
                ),
                opts=opts,
            )

        # Runners look up their peers' pods (is runner-1 still there?).
        k8s.rbac.v1.Role(
            "pod-reader",
            metadata=Meta(name="pod-reader", namespace=ns, labels=labels("rbac")),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"]
                )
            ],
            opts=opts,
        )
        k8s.rbac.v1.RoleBinding(
            "runtime-reads-pods",
            metadata=Meta(
                name="runtime-reads-pods", namespace=ns, labels=labels("rbac")
            ),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount", name=RUNTIME_ACCOUNT, namespace=ns
                )
            ],
            opts=opts,
        )

        core.Secret(
            "runtime-secrets",
            metadata=Meta(name=SECRET_NAME, namespace=ns, labels=labels("secrets")),
            type="Opaque",
            string_data={stored.env_name: stored.value for stored in secrets},
            opts=opts,
        )

        self.statefulsets = [
            runner_pool(
                Placement(ns, pool, config.image("agent-runtime"), labels("runtime")),
                opts,
            )
            for pool in config.runner_pools
        ]
        self.gateway = gateway(config, labels("gateway"), opts)
        self.register_outputs({})


def gateway(
    config: StackConfig, labels: dict[str, str], opts: pulumi.ResourceOptions
) -> core.Service:
    """The gateway: stateless pods behind an internal passthrough load balancer,
    reachable from the VPC (the Cloud Run edge) and nowhere else."""
    selector = {"workload": "agent-gateway"}
    all_labels = {**labels, **selector}
    resources = {"cpu": "500m", "memory": "1Gi"}

    def probe(path: str, period: int) -> core.ProbeArgs:
        return core.ProbeArgs(
            http_get=core.HTTPGetActionArgs(path=path, port="http"),
            period_seconds=period,
            timeout_seconds=2,
        )

    container = core.ContainerArgs(
        name="gateway",
        image=config.image("agent-gateway"),
        ports=[core.ContainerPortArgs(name="http", container_port=GATEWAY_PORT)],
        env=[
            core.EnvVarArgs(
                name="DATABASE_URL",
                value_from=core.EnvVarSourceArgs(
                    secret_key_ref=core.SecretKeySelectorArgs(
                        name=SECRET_NAME, key="DATABASE_URL"
                    )
                ),
            ),
            core.EnvVarArgs(name="GATEWAY_HOST", value="0.0.0.0"),
            core.EnvVarArgs(name="GATEWAY_PORT", value=str(GATEWAY_PORT)),
            core.EnvVarArgs(name="LOG_FORMAT", value="json"),
        ],
        resources=core.ResourceRequirementsArgs(requests=resources, limits=resources),
        startup_probe=probe("/healthz", 2),
        readiness_probe=probe("/readyz", 5),
        liveness_probe=probe("/healthz", 10),
        lifecycle=pause_before_stop(),
        security_context=unprivileged(),
    )
    k8s.apps.v1.Deployment(
        "gateway",
        metadata=Meta(
            name="agent-gateway", namespace=config.namespace, labels=all_labels
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=config.gateway_replicas,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            template=core.PodTemplateSpecArgs(
                metadata=Meta(labels=all_labels),
                spec=core.PodSpecArgs(
                    service_account_name=GATEWAY_ACCOUNT,
                    termination_grace_period_seconds=30,
                    security_context=unprivileged_pod(),
                    containers=[container],
                ),
            ),
        ),
        opts=opts,
    )
    k8s.policy.v1.PodDisruptionBudget(
        "gateway-budget",
        metadata=Meta(
            name="agent-gateway", namespace=config.namespace, labels=all_labels
        ),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
        ),
        opts=opts,
    )
    return core.Service(
        "gateway",
        metadata=Meta(
            name="agent-gateway",
            namespace=config.namespace,
            labels=all_labels,
            annotations={"networking.gke.io/load-balancer-type": "Internal"},
        ),
        spec=core.ServiceSpecArgs(
            type="LoadBalancer",
            selector=selector,
            ports=[core.ServicePortArgs(name="http", port=80, target_port="http")],
        ),
        opts=opts,
    )
