"""Run Pulumi programs offline, under mocks, and look at what they declared.

    graph = run(build, stack_settings("prod"))
    instance = graph.one("gcp:sql/databaseInstance:DatabaseInstance", "agents-pg")
    instance.props["settings"]["ipConfiguration"]["ipv4Enabled"]   # False
    graph.explicitly_depends_on(instance, connection)               # True

No Pulumi CLI and no cloud: the program runs in this process against a mock
engine that records every registration, with its inputs (as the provider would
receive them, camelCase), its ``depends_on``, its provider and its parent. The
mocks fill in what the cloud would compute (an instance's private IP, a service
account's email) so that ``apply`` callbacks run too.

Config and mocks are set before the program runs, and the program is driven to
the end by ``pulumi.runtime.test``: an assertion in an ``apply`` that is never
awaited would never run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor

INFRA = Path(__file__).resolve().parent
PROJECT = "agents"

# What the tests put where a real stack has `pulumi config set --secret` values.
TEST_SECRETS = {
    "agents:imageTag": "3f9c2ab",
    "agents:databasePassword": "test-password-not-a-secret",
    "agents:openaiApiKey": "sk-test-not-a-key",
    "agents:iapClientId": "test-client.apps.googleusercontent.com",
    "agents:iapClientSecret": "test-client-secret",
}


@dataclass
class Resource:
    urn: str
    type: str
    name: str
    props: dict[str, Any]
    parent: str
    provider: str
    dependencies: set[str]
    property_dependencies: set[str]
    custom: bool

    @property
    def explicit_dependencies(self) -> set[str]:
        """URNs named in ``depends_on``: dependencies no input accounts for."""
        return self.dependencies - self.property_dependencies

    @property
    def is_kubernetes_object(self) -> bool:
        return self.type.startswith("kubernetes:") and self.custom

    def manifest(self) -> dict[str, Any]:
        """The object as ``kubectl`` would see it (Kubernetes objects only)."""
        return {k: v for k, v in self.props.items() if not k.startswith("__")}


@dataclass
class Graph:
    resources: list[Resource] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Resource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise LookupError(
                f"expected one {type_}{f' named {name!r}' if name else ''}, "
                f"found {len(found)} (declared: {names})"
            )
        return found[0]

    def find(self, type_: str, name: str) -> Resource | None:
        found = [r for r in self.of_type(type_) if r.name == name]
        return found[0] if found else None

    def kubernetes_objects(self) -> list[Resource]:
        return [r for r in self.resources if r.is_kubernetes_object]

    def explicitly_depends_on(self, resource: Resource, target: Resource) -> bool:
        return target.urn in resource.explicit_dependencies

    def depends_on(self, resource: Resource, target: Resource) -> bool:
        return target.urn in resource.dependencies


def _computed(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What the cloud would fill in for this resource after creating it."""
    project = "mock-project"
    extra: dict[str, Any] = {"name": inputs.get("name", name)}
    if type_ == "gcp:sql/databaseInstance:DatabaseInstance":
        extra["privateIpAddress"] = "10.90.0.3"
        extra["connectionName"] = f"{project}:{inputs.get('region')}:{name}"
    elif type_ == "gcp:container/cluster:Cluster":
        extra["endpoint"] = "203.0.113.10"
        extra["masterAuth"] = {"clusterCaCertificate": "bW9jay1jYQ=="}
    elif type_ == "gcp:serviceaccount/account:Account":
        extra["email"] = f"{inputs.get('accountId')}@{project}.iam.gserviceaccount.com"
    elif type_ == "gcp:compute/globalAddress:GlobalAddress":
        extra["address"] = "198.51.100.7"
    elif type_ == "gcp:cloudrunv2/service:Service":
        extra["uri"] = f"https://{name}-mock.a.run.app"
    elif type_ == "kubernetes:core/v1:Service":
        extra["status"] = {"loadBalancer": {"ingress": [{"ip": "10.42.0.50"}]}}
    return {**inputs, **extra}


def _plain(value: Any) -> Any:
    """Inputs as the provider would act on them: secrets unwrapped (the engine
    sends a secret as a marked map), and whole numbers as integers (numbers
    cross the engine as floats: a replica count of 2.0 is 2)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _plain(value.get("value"))
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", _computed(args.typ, args.name, args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _RecordingMonitor(MockMonitor):
    """The mock engine, keeping each registration's dependencies and provider."""

    def __init__(self, mocks: _Mocks, graph: Graph) -> None:
        super().__init__(mocks)
        self.graph = graph
        self.lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC name)
        # Registrations arrive from several threads at once.
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = _plain(rpc.deserialize_properties(request.object))
        property_dependencies = {
            urn for deps in request.propertyDependencies.values() for urn in deps.urns
        }
        resource = Resource(
            urn=response.urn,
            type=request.type,
            name=request.name,
            props=inputs,
            parent=request.parent,
            provider=request.provider,
            dependencies=set(request.dependencies),
            property_dependencies=property_dependencies,
            custom=request.custom,
        )
        with self.lock:
            self.graph.resources.append(resource)
        return response


def stack_settings(stack: str, **overrides: Any) -> dict[str, str]:
    """A stack's config as the Pulumi CLI hands it to the program: the values of
    ``Pulumi.<stack>.yaml``, the test stand-ins for secrets, then ``overrides``
    (``"agents:replicaRegion": None`` removes a key)."""
    path = INFRA / f"Pulumi.{stack}.yaml"
    declared = yaml.safe_load(path.read_text())["config"]
    merged: dict[str, Any] = {**declared, **TEST_SECRETS, **overrides}
    return {key: _encode(value) for key, value in merged.items() if value is not None}


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def run(
    program: Callable[[], Any], config: dict[str, str], stack: str = "dev"
) -> Graph:
    """Run ``program`` under mocks with ``config``; return what it declared."""
    graph = Graph()
    mocks = _Mocks()
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks,
        project=PROJECT,
        stack=stack,
        preview=False,
        monitor=_RecordingMonitor(mocks, graph),
    )
    pulumi.runtime.set_all_config(config)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def declare() -> None:
        program()

    declare()
    return graph
