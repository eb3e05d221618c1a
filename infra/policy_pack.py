"""The plain rules of ``policies.py`` wrapped for ``pulumi_policy``.

Kept apart from ``policy/__main__.py`` so the tests can build the wrappers and
call them without starting the policy server that ``PolicyPack`` starts.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policies import RESOURCE_RULES, ResourceRule, pdb_for_every_statefulset


def _resource_policy(name: str, rule: ResourceRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for problem in rule(args.resource_type, args.props):
            report(problem, None)

    return ResourceValidationPolicy(
        name=name,
        description=(rule.__doc__ or name).strip().splitlines()[0],
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _pdb_policy() -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources: list[tuple[str, Any]] = [
            (r.resource_type, r.props) for r in args.resources
        ]
        for problem in pdb_for_every_statefulset(resources):
            report(problem, None)

    return StackValidationPolicy(
        name="pdb-for-every-statefulset",
        description="Every StatefulSet's pods are covered by a PodDisruptionBudget",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def policies() -> list[Any]:
    return [
        *(_resource_policy(name, rule) for name, rule in RESOURCE_RULES.items()),
        _pdb_policy(),
    ]
