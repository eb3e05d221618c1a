"""Rules every stack must keep, as plain functions over declared resources.

Each resource rule takes a resource's type and its properties (camelCase, as
the provider receives them) and returns what is wrong, as sentences; an empty
list means it complies. ``stack_violations`` applies them all to a whole stack,
and adds the rules that need more than one resource (a disruption budget for
every StatefulSet). The offline tests run them on the mocked graph of each stack;
``infra/policy`` wraps the same functions as a Pulumi policy pack, so
``pulumi preview --policy-pack policy`` (in ``infra/``) enforces them before anything
changes in the cloud.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from infra.labels import REQUIRED

Props = Mapping[str, Any]
ResourceRule = Callable[[str, Props], list[str]]

APPROVED_REGIONS = frozenset(
    {"us-central1", "us-east1", "us-east4", "europe-west1", "europe-west4"}
)
SQL_INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
CLUSTER = "gcp:container/cluster:Cluster"
CLOUD_RUN = "gcp:cloudrunv2/service:Service"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_MEMBERS = (
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:storage/bucketIAMBinding:BucketIAMBinding",
    "gcp:storage/bucketAccessControl:BucketAccessControl",
)
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

# Where each labelled GCP type keeps its labels.
LABEL_FIELDS: dict[str, tuple[str, ...]] = {
    SQL_INSTANCE: ("settings", "userLabels"),
    CLUSTER: ("resourceLabels",),
    CLOUD_RUN: ("labels",),
    BUCKET: ("labels",),
    "gcp:artifactregistry/repository:Repository": ("labels",),
    "gcp:secretmanager/secret:Secret": ("labels",),
    "gcp:compute/securityPolicy:SecurityPolicy": ("labels",),
    "gcp:compute/globalAddress:GlobalAddress": ("labels",),
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": ("labels",),
}


def _get(props: Props, *path: str) -> Any:
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _labels(type_: str, props: Props) -> Mapping[str, Any] | None:
    if type_.startswith("kubernetes:"):
        return _get(props, "metadata", "labels") or {}
    path = LABEL_FIELDS.get(type_)
    return None if path is None else (_get(props, *path) or {})


def _containers(type_: str, props: Props) -> list[Mapping[str, Any]]:
    if type_ in (STATEFULSET, DEPLOYMENT):
        return list(_get(props, "spec", "template", "spec", "containers") or [])
    if type_ == CLOUD_RUN:
        return list(_get(props, "template", "containers") or [])
    return []


def private_database(type_: str, props: Props) -> list[str]:
    """Cloud SQL has no public IP and sits on a private network."""
    if type_ != SQL_INSTANCE:
        return []
    ip = _get(props, "settings", "ipConfiguration") or {}
    problems = []
    if ip.get("ipv4Enabled") is not False:
        problems.append("Cloud SQL must not have a public IP (set ipv4Enabled false)")
    if not ip.get("privateNetwork"):
        problems.append("Cloud SQL must have a private IP on the VPC (privateNetwork)")
    if ip.get("authorizedNetworks"):
        problems.append("Cloud SQL must not list authorized public networks")
    return problems


def no_public_buckets(type_: str, props: Props) -> list[str]:
    """No bucket readable by anyone: prevention enforced, no public members."""
    if type_ == BUCKET:
        problems = []
        if props.get("publicAccessPrevention") != "enforced":
            problems.append("a bucket must enforce public access prevention")
        if props.get("uniformBucketLevelAccess") is not True:
            problems.append("a bucket must use uniform bucket-level access")
        return problems
    if type_ in BUCKET_MEMBERS:
        members = [props.get("member"), props.get("entity"), *props.get("members", [])]
        if any(str(m) in PUBLIC_MEMBERS for m in members if m):
            return ["a bucket must not be granted to allUsers or allAuthenticatedUsers"]
    return []


def required_labels(type_: str, props: Props) -> list[str]:
    """Everything that takes labels carries tenant, env, app and component."""
    found = _labels(type_, props)
    if found is None:
        return []
    missing = [key for key in REQUIRED if not found.get(key)]
    return [f"missing label(s) {', '.join(missing)}"] if missing else []


def deletion_protection_in_prod(type_: str, props: Props) -> list[str]:
    """In prod, the database, the cluster and the edge cannot be deleted by a
    stray `pulumi destroy`."""
    if type_ not in (SQL_INSTANCE, CLUSTER, CLOUD_RUN):
        return []
    labels = _labels(type_, props) or {}
    if labels.get("env") != "prod":
        return []
    problems = []
    if props.get("deletionProtection") is not True:
        problems.append("prod: deletionProtection must be true")
    if type_ == SQL_INSTANCE and (
        _get(props, "settings", "deletionProtectionEnabled") is not True
    ):
        problems.append(
            "prod: Cloud SQL settings.deletionProtectionEnabled must be true"
        )
    return problems


def approved_regions(type_: str, props: Props) -> list[str]:
    """Regional resources live only in the regions the company approved."""
    if not type_.startswith("gcp:"):
        return []
    problems = []
    for key in ("region", "location"):
        value = props.get(key)
        if isinstance(value, str) and value and value not in APPROVED_REGIONS:
            problems.append(f"{key} {value!r} is not an approved region")
    return problems


def requests_equal_limits(type_: str, props: Props) -> list[str]:
    """Pods get what they ask for: CPU and memory requests equal limits, so a
    runner is never squeezed or OOM-killed for a neighbour's burst."""
    if type_ not in (STATEFULSET, DEPLOYMENT):
        return []
    problems = []
    for container in _containers(type_, props):
        resources = container.get("resources") or {}
        requests, limits = (
            resources.get("requests") or {},
            resources.get("limits") or {},
        )
        for kind in ("cpu", "memory"):
            if not requests.get(kind) or requests.get(kind) != limits.get(kind):
                problems.append(
                    f"container {container.get('name')}: {kind} request "
                    f"{requests.get(kind)!r} must equal its limit {limits.get(kind)!r}"
                )
    return problems


def no_latest_images(type_: str, props: Props) -> list[str]:
    """Images are pinned: a git-SHA tag or a digest, never ``latest`` or no tag."""
    problems = []
    for container in _containers(type_, props):
        image = str(container.get("image") or "")
        name = image.rsplit("/", 1)[-1]
        if "@sha256:" in image:
            continue
        tag = name.partition(":")[2]
        if not tag or tag == "latest":
            problems.append(f"image {image!r} must be pinned to a git SHA tag")
    return problems


RESOURCE_RULES: dict[str, ResourceRule] = {
    "private-database": private_database,
    "no-public-buckets": no_public_buckets,
    "required-labels": required_labels,
    "deletion-protection-in-prod": deletion_protection_in_prod,
    "approved-regions": approved_regions,
    "requests-equal-limits": requests_equal_limits,
    "no-latest-images": no_latest_images,
}


def pdb_for_every_statefulset(resources: Iterable[tuple[str, Props]]) -> list[str]:
    """Every StatefulSet's pods are covered by a PodDisruptionBudget, so a node
    upgrade never drains a whole pool at once."""
    items = list(resources)
    budgets = [
        (_get(props, "metadata", "namespace"), _get(props, "spec", "selector") or {})
        for type_, props in items
        if type_ == PDB
    ]
    problems = []
    for type_, props in items:
        if type_ != STATEFULSET:
            continue
        namespace = _get(props, "metadata", "namespace")
        pod_labels = _get(props, "spec", "template", "metadata", "labels") or {}
        covered = any(
            budget_ns == namespace
            and selector.get("matchLabels")
            and all(pod_labels.get(k) == v for k, v in selector["matchLabels"].items())
            for budget_ns, selector in budgets
        )
        if not covered:
            name = _get(props, "metadata", "name")
            problems.append(f"StatefulSet {name} has no PodDisruptionBudget")
    return problems


def stack_violations(resources: Iterable[tuple[str, str, Props]]) -> list[str]:
    """Every rule over a whole stack: ``(type, name, props)`` in, sentences out."""
    items = list(resources)
    problems = [
        f"{rule} {type_} {name}: {problem}"
        for type_, name, props in items
        for rule, check in RESOURCE_RULES.items()
        for problem in check(type_, props)
    ]
    problems += [
        f"pdb-for-every-statefulset: {problem}"
        for problem in pdb_for_every_statefulset((t, p) for t, _, p in items)
    ]
    return problems
