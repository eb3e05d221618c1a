"""The policies: every stack complies, and each rule catches what it is for."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import ResourceValidationArgs

from infra import policies
from infra.policy_pack import policies as pack_policies
from infra.testing import Graph

LABELS = {"tenant": "shared", "env": "prod", "app": "agents", "component": "x"}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_complies(graphs: dict[str, Graph], stack: str) -> None:
    resources = [(r.type, r.name, r.props) for r in graphs[stack].resources]
    assert policies.stack_violations(resources) == []


def test_every_labelled_resource_in_the_stack_is_checked(prod: Graph) -> None:
    labelled = {r.type for r in prod.resources if r.type in policies.LABEL_FIELDS}
    assert labelled >= {
        policies.SQL_INSTANCE,
        policies.CLUSTER,
        policies.CLOUD_RUN,
        "gcp:artifactregistry/repository:Repository",
        "gcp:secretmanager/secret:Secret",
        "gcp:compute/securityPolicy:SecurityPolicy",
    }


def sql(**ip: Any) -> dict[str, Any]:
    return {
        "region": "us-central1",
        "deletionProtection": True,
        "settings": {
            "userLabels": LABELS,
            "deletionProtectionEnabled": True,
            "ipConfiguration": {"ipv4Enabled": False, "privateNetwork": "vpc", **ip},
        },
    }


def runners(
    image: str = "r/agent-runtime:3f9c2ab", memory: str = "2Gi"
) -> dict[str, Any]:
    return {
        "metadata": {"name": "agent-runtime", "namespace": "agents", "labels": LABELS},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "agent-runtime"}},
                "spec": {
                    "containers": [
                        {
                            "name": "runtime",
                            "image": image,
                            "resources": {
                                "requests": {"cpu": "1", "memory": "2Gi"},
                                "limits": {"cpu": "1", "memory": memory},
                            },
                        }
                    ]
                },
            }
        },
    }


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("private-database", policies.SQL_INSTANCE, sql(ipv4Enabled=True)),
    ("private-database", policies.SQL_INSTANCE, sql(privateNetwork=None)),
    (
        "no-public-buckets",
        policies.BUCKET,
        {"labels": LABELS, "uniformBucketLevelAccess": True},
    ),
    (
        "no-public-buckets",
        "gcp:storage/bucketIAMMember:BucketIAMMember",
        {"member": "allUsers", "role": "roles/storage.objectViewer"},
    ),
    (
        "required-labels",
        "gcp:secretmanager/secret:Secret",
        {"labels": {"tenant": "shared", "env": "dev", "app": "agents"}},
    ),
    (
        "required-labels",
        "kubernetes:core/v1:Service",
        {"metadata": {"name": "s", "labels": {"app": "agents"}}},
    ),
    (
        "deletion-protection-in-prod",
        policies.SQL_INSTANCE,
        {**sql(), "deletionProtection": False},
    ),
    (
        "approved-regions",
        "gcp:artifactregistry/repository:Repository",
        {"location": "asia-south2", "labels": LABELS},
    ),
    ("requests-equal-limits", policies.STATEFULSET, runners(memory="4Gi")),
    ("no-latest-images", policies.STATEFULSET, runners(image="r/agent-runtime:latest")),
    ("no-latest-images", policies.STATEFULSET, runners(image="r/agent-runtime")),
]


@pytest.mark.parametrize(("rule", "type_", "props"), CASES)
def test_each_rule_catches_its_case(
    rule: str, type_: str, props: dict[str, Any]
) -> None:
    found = policies.RESOURCE_RULES[rule](type_, props)
    assert found, f"{rule} let it through"
    others = {
        name: check(type_, props)
        for name, check in policies.RESOURCE_RULES.items()
        if name != rule
    }
    assert not any(others.values()), f"another rule fired too: {others}"


def test_a_compliant_resource_passes_every_rule() -> None:
    for type_, props in (
        (policies.SQL_INSTANCE, sql()),
        (policies.STATEFULSET, runners()),
    ):
        for name, check in policies.RESOURCE_RULES.items():
            assert check(type_, props) == [], name


def test_a_statefulset_without_a_budget_is_reported() -> None:
    budget = {
        "metadata": {"namespace": "agents"},
        "spec": {"selector": {"matchLabels": {"app": "agent-runtime"}}},
    }
    covered = [(policies.STATEFULSET, runners()), (policies.PDB, budget)]
    assert policies.pdb_for_every_statefulset(covered) == []
    other = {**budget, "spec": {"selector": {"matchLabels": {"app": "gateway"}}}}
    uncovered = [(policies.STATEFULSET, runners()), (policies.PDB, other)]
    assert policies.pdb_for_every_statefulset(uncovered) == [
        "StatefulSet agent-runtime has no PodDisruptionBudget"
    ]


def test_the_policy_pack_reports_through_pulumi_policy() -> None:
    pack = {policy.name: policy for policy in pack_policies()}
    assert set(pack) == {*policies.RESOURCE_RULES, "pdb-for-every-statefulset"}

    reported: list[str] = []
    args = ResourceValidationArgs(
        policies.SQL_INSTANCE,
        sql(ipv4Enabled=True),
        "urn:x",
        "db",
        None,  # type: ignore[arg-type]
        None,
    )
    pack["private-database"].validate(
        args, lambda message, urn: reported.append(message)
    )
    assert reported == ["Cloud SQL must not have a public IP (set ipv4Enabled false)"]

    class Stack:
        resources = [
            type("R", (), {"resource_type": policies.STATEFULSET, "props": runners()})
        ]

    reported.clear()
    pack["pdb-for-every-statefulset"].validate(
        Stack(),
        lambda message, urn: reported.append(message),
    )
    assert reported == ["StatefulSet agent-runtime has no PodDisruptionBudget"]
