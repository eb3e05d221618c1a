"""The Kubernetes objects: valid for the cluster's version, on the cluster's own
provider, and shaped for long-lived runners."""

from __future__ import annotations

import kubernetes_validate
import pytest

from infra.testing import Graph, Resource, stack_settings

STATEFULSET = "kubernetes:apps/v1:StatefulSet"


def containers(resource: Resource) -> list[dict]:  # type: ignore[type-arg]
    return list(resource.props["spec"]["template"]["spec"]["containers"])


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_object_is_valid_in_strict_mode_for_the_cluster_version(
    graphs: dict[str, Graph], stack: str
) -> None:
    version = stack_settings(stack)["agents:clusterVersion"]
    objects = graphs[stack].kubernetes_objects()
    assert len(objects) >= 12
    for resource in objects:
        try:
            kubernetes_validate.validate(resource.manifest(), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{resource.type} {resource.name}: {error.message}")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_object_uses_the_clusters_provider(
    graphs: dict[str, Graph], stack: str
) -> None:
    graph = graphs[stack]
    provider = graph.one("pulumi:providers:kubernetes")
    assert provider.props["kubeconfig"], "the provider is built from the cluster"
    for resource in graph.kubernetes_objects():
        assert resource.provider.startswith(provider.urn + "::"), (
            f"{resource.type} {resource.name} does not use the explicit provider"
        )


def test_no_bare_pods(prod: Graph) -> None:
    kinds = {r.props["kind"] for r in prod.kubernetes_objects()}
    assert "Pod" not in kinds and "ReplicaSet" not in kinds


def test_one_statefulset_per_pool_under_its_headless_service(prod: Graph) -> None:
    statefulsets = prod.of_type(STATEFULSET)
    assert sorted(s.props["metadata"]["name"] for s in statefulsets) == [
        "agent-runtime-default",
        "agent-runtime-enterprise",
    ]
    services = {
        s.props["metadata"]["name"]: s.props
        for s in prod.of_type("kubernetes:core/v1:Service")
    }
    for statefulset in statefulsets:
        spec = statefulset.props["spec"]
        service = services[spec["serviceName"]]
        assert service["spec"]["clusterIP"] == "None", "the Service must be headless"
        selector = service["spec"]["selector"]
        pod_labels = spec["template"]["metadata"]["labels"]
        assert all(pod_labels[k] == v for k, v in selector.items())


def test_runner_pods_name_themselves_from_the_downward_api(prod: Graph) -> None:
    for statefulset in prod.of_type(STATEFULSET):
        env = {e["name"]: e for e in containers(statefulset)[0]["env"]}
        assert env["POD_NAME"] == {
            "name": "POD_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        }
        for secret in ("DATABASE_URL", "OPENAI_API_KEY"):
            reference = env[secret]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": "agent-runtime-secrets", "key": secret}
            assert "value" not in env[secret]


def test_runner_probes_grace_and_resources(prod: Graph) -> None:
    for statefulset in prod.of_type(STATEFULSET):
        pod = statefulset.props["spec"]["template"]["spec"]
        (container,) = containers(statefulset)
        assert container["ports"] == [{"name": "http", "containerPort": 8081}]
        probes = {
            kind: container[kind]["httpGet"]["path"]
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert probes == {
            "startupProbe": "/healthz",
            "readinessProbe": "/readyz",
            "livenessProbe": "/healthz",
        }
        assert pod["terminationGracePeriodSeconds"] >= 30
        assert container["lifecycle"]["preStop"]["exec"]["command"]
        resources = container["resources"]
        assert resources["requests"] == resources["limits"]
        assert pod["serviceAccountName"] == "agent-runtime"


def test_every_pool_has_a_disruption_budget(prod: Graph) -> None:
    budgets = {
        b.props["metadata"]["name"]: b.props["spec"]
        for b in prod.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    }
    for statefulset in prod.of_type(STATEFULSET):
        name = statefulset.props["metadata"]["name"]
        assert budgets[name]["maxUnavailable"] == 1
        assert budgets[name]["selector"] == statefulset.props["spec"]["selector"]


def test_runners_may_read_pods_and_nothing_else(dev: Graph) -> None:
    role = dev.one("kubernetes:rbac.authorization.k8s.io/v1:Role")
    assert role.props["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = dev.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert binding.props["subjects"][0]["name"] == "agent-runtime"
    assert binding.props["roleRef"]["name"] == role.props["metadata"]["name"]


def test_gateway_is_internal_only(dev: Graph) -> None:
    service = dev.one("kubernetes:core/v1:Service", "gateway")
    assert service.props["spec"]["type"] == "LoadBalancer"
    annotations = service.props["metadata"]["annotations"]
    assert annotations["networking.gke.io/load-balancer-type"] == "Internal"
