"""What the infrastructure labs' graders share: the stack run under Pulumi's mocks
with the learner's functions swapped in, and strict Kubernetes validation."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from infra.stack import build
from infra.testing import Graph, Resource, run, stack_settings


def declared(stack: str = "prod", **overrides: Any) -> Graph:
    """The stack's resources, as declared with the current (swapped) functions."""
    return run(build, stack_settings(stack, **overrides), stack=stack)


def validation_error(resource: Resource, version: str = "1.33") -> str | None:
    """Why Kubernetes would refuse the object, in strict mode; None if it is valid."""
    try:
        kubernetes_validate.validate(resource.manifest(), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        return f"{path}: {error.message}" if path else str(error.message)
    return None


def by_name(resources: list[Resource]) -> dict[str, Resource]:
    return {r.props["metadata"]["name"]: r for r in resources}
