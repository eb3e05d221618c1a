"""Lab 2: the runner pool's Kubernetes objects, declared with pulumi-kubernetes.

Each check runs the prod stack under Pulumi's mocks with one task's function
taken from the learner's kubernetes.py, then reads the objects it declared.
"""

from __future__ import annotations

from typing import Any

import pytest
from infra_support import by_name, declared, validation_error

from course.check import check
from infra.labels import REQUIRED
from infra.testing import Graph, Resource

SERVICE = "kubernetes:core/v1:Service"
PROVIDER = "pulumi:providers:kubernetes"
POD_NAME_SOURCES = (
    "metadata.name",
    "metadata.labels['statefulset.kubernetes.io/pod-name']",
)
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
POOLS = {"agent-runtime-default": 3, "agent-runtime-enterprise": 2}


def runner_services(graph: Graph) -> dict[str, Resource]:
    return {
        name: service
        for name, service in by_name(graph.of_type(SERVICE)).items()
        if name in POOLS
    }


def container(statefulset: Resource) -> dict[str, Any]:
    return dict(statefulset.props["spec"]["template"]["spec"]["containers"][0])


IMAGE = "us-central1-docker.pkg.dev/agents-course-prod/agents/agent-runtime:3f9c2ab"
UNITS = {
    "m": 0.001,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}


def quantity(value: object) -> float | None:
    """A Kubernetes quantity as a number: "2" and "2000m", "4Gi" and "4096Mi"."""
    text = str(value)
    for suffix in sorted(UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * UNITS[suffix]
            except ValueError:
                return None
    try:
        return float(text)
    except ValueError:
        return None


def pause_seconds(container: dict[str, Any]) -> float:
    """How long the preStop hook pauses: an exec'd sleep or the sleep action."""
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return float((pre_stop["sleep"] or {}).get("seconds") or 0)
    command = " ".join(map(str, ((pre_stop.get("exec") or {}).get("command") or [])))
    words = command.replace(";", " ").split()
    for word, after in zip(words, words[1:], strict=False):
        if word.endswith("sleep"):
            return quantity(after) or 0.0
    return 0.0


def valid(resource: Resource) -> None:
    problem = validation_error(resource)
    check(
        problem is None,
        called=f"kubernetes-validate --strict on the {resource.props.get('kind')} "
        f"{resource.props.get('metadata', {}).get('name')}",
        got=problem,
        expected="an object Kubernetes 1.33 accepts, with no unknown field",
    )


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_each_pool_has_a_headless_service() -> None:
    """headless_service(placement, opts) for the prod pools"""
    graph = declared()
    services = runner_services(graph)
    check(
        sorted(services) == sorted(POOLS),
        called="headless_service for the pools default and enterprise",
        got=f"Services named {sorted(by_name(graph.of_type(SERVICE)))}",
        expected=f"one Service per pool, named {sorted(POOLS)} in namespace agents",
    )
    statefulsets = by_name(graph.of_type(STATEFULSET))
    for name, service in services.items():
        spec = service.props["spec"]
        valid(service)
        check(
            spec.get("clusterIP") == "None" and spec.get("type") in (None, "ClusterIP"),
            called=f"headless_service for {name}",
            got=f"clusterIP {spec.get('clusterIP')!r}, type {spec.get('type')!r}",
            expected="clusterIP 'None': a DNS name per pod, no load-balanced address",
        )
        pod_labels = statefulsets[name].props["spec"]["template"]["metadata"]["labels"]
        selector = spec.get("selector") or {}
        check(
            selector
            and all(pod_labels.get(k) == v for k, v in selector.items())
            and selector.get("pool") == name.removeprefix("agent-runtime-"),
            called=f"headless_service for {name}",
            got=f"selector {selector}",
            expected=f"the pool's selector (its pods carry {pod_labels})",
        )
        ports = [
            (p.get("name"), p.get("port"), p.get("targetPort"))
            for p in spec.get("ports") or []
        ]
        check(
            len(ports) == 1
            and ports[0][:2] == ("http", 8081)
            and ports[0][2] in (None, "http", 8081),
            called=f"headless_service for {name}",
            got=f"ports (name, port, targetPort) {ports}",
            expected="one port, named http, on RUNTIME_PORT (8081), to the "
            "container's port named http",
        )
        metadata = service.props.get("metadata") or {}
        check(
            metadata.get("namespace") == "agents"
            and service.provider.startswith(graph.one(PROVIDER).urn),
            called=f"headless_service for {name}",
            got=f"namespace {metadata.get('namespace')!r}, provider "
            f"{service.provider or 'the default'}",
            expected="the placement's namespace (agents), through the cluster's "
            "explicit provider (pass opts)",
        )
        check(
            spec.get("publishNotReadyAddresses") is True,
            called=f"headless_service for {name}",
            got=f"publishNotReadyAddresses {spec.get('publishNotReadyAddresses')!r}",
            expected="True: a starting runner has its DNS name before it is ready",
        )


# Task 2 ----------------------------------------------------------------------


def runner_env(graph: Graph) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        name: {e["name"]: e for e in container(statefulset).get("env") or []}
        for name, statefulset in by_name(graph.of_type(STATEFULSET)).items()
    }


@pytest.mark.task(2)
def test_the_pod_name_comes_from_the_downward_api() -> None:
    """runner_env(placement): POD_NAME"""
    first, again = runner_env(declared()), runner_env(declared())
    for name, env in first.items():
        pod_name = env.get("POD_NAME", {})
        source = (pod_name.get("valueFrom") or {}).get("fieldRef") or {}
        check(
            source.get("fieldPath") in POD_NAME_SOURCES and "value" not in pod_name,
            called=f"runner_env for {name}: POD_NAME",
            got=pod_name or "no POD_NAME variable",
            expected="POD_NAME from the downward API (fieldRef metadata.name), "
            "so runner-0 is runner-0 again after a restart",
        )
        check(
            pod_name == again[name].get("POD_NAME"),
            called="the stack declared twice",
            got=f"{pod_name}, then {again[name].get('POD_NAME')}",
            expected="the same POD_NAME both times",
        )


@pytest.mark.task(2)
def test_secrets_are_referenced_not_written() -> None:
    """runner_env(placement): DATABASE_URL, OPENAI_API_KEY and the rest"""
    for name, env in runner_env(declared()).items():
        for secret in ("DATABASE_URL", "OPENAI_API_KEY"):
            entry = env.get(secret, {})
            reference = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
            check(
                reference == {"name": "agent-runtime-secrets", "key": secret}
                and "value" not in entry,
                called=f"runner_env for {name}: {secret}",
                got=entry or f"no {secret} variable",
                expected=f"a secretKeyRef to the Secret agent-runtime-secrets, key "
                f"{secret}, and no value in the pod spec",
            )
        plain = {k: e.get("value") for k, e in env.items() if "value" in e}
        check(
            plain.get("APP_ENV") == "production"
            and plain.get("RUNTIME_HOST") == "0.0.0.0"
            and plain.get("RUNTIME_PORT") == "8081",
            called=f"runner_env for {name}",
            got=plain,
            expected="APP_ENV production, RUNTIME_HOST 0.0.0.0 (reachable from "
            "outside the pod), RUNTIME_PORT 8081",
        )


# Task 3 ----------------------------------------------------------------------


@pytest.mark.task(3)
def test_probes_ask_the_right_questions() -> None:
    """runner_probes()"""
    for name, statefulset in by_name(declared().of_type(STATEFULSET)).items():
        spec = container(statefulset)
        paths = {
            kind: ((spec.get(kind) or {}).get("httpGet") or {}).get("path")
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        check(
            paths
            == {
                "startupProbe": "/healthz",
                "readinessProbe": "/readyz",
                "livenessProbe": "/healthz",
            },
            called=f"runner_probes() in {name}",
            got=paths,
            expected="startup and liveness on /healthz (the process is up), "
            "readiness on /readyz (it can take work)",
        )
        ports = {
            ((spec.get(kind) or {}).get("httpGet") or {}).get("port") for kind in paths
        }
        check(
            ports <= {"http", 8081},
            called=f"runner_probes() in {name}",
            got=f"probe ports {sorted(map(repr, ports))}",
            expected="the runner's port: the name 'http', or the number 8081 "
            "(an int, not the string '8081')",
        )
        startup = spec["startupProbe"]
        allowance = startup.get("periodSeconds", 10) * startup.get(
            "failureThreshold", 3
        )
        check(
            allowance >= 30,
            called=f"runner_probes() in {name}: the startup probe",
            got=f"{allowance} s before the pod is restarted",
            expected="at least 30 s for a first boot (migrations, DBOS launch)",
        )
        valid(statefulset)


# Task 4 ----------------------------------------------------------------------


@pytest.mark.task(4)
def test_each_pool_is_a_statefulset_under_its_headless_service() -> None:
    """runner_statefulset(placement, service, opts) for the prod pools"""
    graph = declared()
    statefulsets = by_name(graph.of_type(STATEFULSET))
    kinds = sorted({r.props.get("kind") for r in graph.kubernetes_objects()})
    check(
        sorted(statefulsets) == sorted(POOLS) and "Pod" not in kinds,
        called="runner_statefulset for the pools default and enterprise",
        got=f"StatefulSets {sorted(statefulsets)}; kinds declared {kinds}",
        expected=f"one StatefulSet per pool, named {sorted(POOLS)}; no bare Pod",
    )
    services = runner_services(graph)
    provider = graph.one("pulumi:providers:kubernetes")
    for name, statefulset in statefulsets.items():
        spec = statefulset.props["spec"]
        valid(statefulset)
        check(
            spec.get("serviceName") == name
            and services[name].props["spec"].get("clusterIP") == "None",
            called=f"runner_statefulset for {name}",
            got=f"serviceName {spec.get('serviceName')!r}",
            expected=f"serviceName {name!r}: the pool's headless Service",
        )
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get(
            "labels"
        ) or {}
        wanted = {
            "workload": "agent-runtime",
            "pool": name.removeprefix("agent-runtime-"),
        }
        check(
            selector == wanted
            and all(pod_labels.get(k) == v for k, v in selector.items())
            and all(pod_labels.get(k) for k in REQUIRED),
            called=f"runner_statefulset for {name}: labels",
            got=f"selector {selector}, pod labels {pod_labels}",
            expected=f"the placement's selector {wanted}, also on the pod template, "
            "with the placement's labels (tenant, env, app, component)",
        )
        check(
            spec.get("replicas") == POOLS[name],
            called=f"runner_statefulset for {name}",
            got=f"replicas {spec.get('replicas')}",
            expected=f"the pool's replicas from the stack config ({POOLS[name]})",
        )
        check(
            statefulset.provider.startswith(provider.urn),
            called=f"runner_statefulset for {name}",
            got=f"provider {statefulset.provider or 'the default'}",
            expected="the cluster's explicit provider (pass opts through)",
        )


@pytest.mark.task(4)
def test_the_runner_container_is_shaped_for_a_long_life() -> None:
    """runner_statefulset: the pod template"""
    for name, statefulset in by_name(declared().of_type(STATEFULSET)).items():
        pod = statefulset.props["spec"]["template"]["spec"]
        spec = container(statefulset)
        ports = [
            (p.get("name"), p.get("containerPort")) for p in spec.get("ports") or []
        ]
        check(
            ports == [("http", 8081)],
            called=f"runner_statefulset for {name}: container ports",
            got=ports,
            expected="one internal port, named http, 8081",
        )
        resources = spec.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        check(
            {"cpu", "memory"} <= set(requests)
            and all(
                quantity(requests.get(k)) == quantity(limits.get(k))
                for k in ("cpu", "memory")
            ),
            called=f"runner_statefulset for {name}: resources",
            got=resources,
            expected="cpu and memory requests equal to their limits, from the pool",
        )
        check(
            spec.get("image") == IMAGE,
            called=f"runner_statefulset for {name}: image",
            got=spec.get("image"),
            expected=f"the placement's image, pinned to the git SHA ({IMAGE})",
        )
        check(
            pod.get("terminationGracePeriodSeconds", 30) >= 30
            and pause_seconds(spec) >= 5,
            called=f"runner_statefulset for {name}: shutdown",
            got=f"grace {pod.get('terminationGracePeriodSeconds')}, "
            f"preStop {(spec.get('lifecycle') or {}).get('preStop')}",
            expected="a grace period of 30 s or more and a preStop pause of some "
            "seconds (a sleep)",
        )
        non_root = (spec.get("securityContext") or {}).get("runAsNonRoot") or (
            pod.get("securityContext") or {}
        ).get("runAsNonRoot")
        check(
            non_root is True,
            called=f"runner_statefulset for {name}: security context",
            got={
                "container": spec.get("securityContext"),
                "pod": pod.get("securityContext"),
            },
            expected="runAsNonRoot true (the image runs as user 10001)",
        )
        env = {e["name"] for e in spec.get("env") or []}
        check(
            "POD_NAME" in env and spec.get("readinessProbe"),
            called=f"runner_statefulset for {name}: env and probes",
            got=f"env {sorted(env)}, readiness probe {spec.get('readinessProbe')}",
            expected="the env of runner_env and the probes of runner_probes",
        )
        check(
            pod.get("serviceAccountName") == "agent-runtime",
            called=f"runner_statefulset for {name}: service account",
            got=pod.get("serviceAccountName"),
            expected="agent-runtime (workload identity and the pod-reader Role)",
        )
