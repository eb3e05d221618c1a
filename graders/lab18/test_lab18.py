"""Lab 18: a cross-region replica, and the runbook that promotes it.

The replica check runs the prod stack under Pulumi's mocks with the learner's
read_replica swapped in. The runbook checks call the learner's functions with
the prod stack's target and a shell that only records.
"""

from __future__ import annotations

import pytest
from infra_support import declared

from course.check import check
from infra.labels import REQUIRED
from infra.runbook import Step, promotion_steps, run_steps, target_for

SQL = "gcp:sql/databaseInstance:DatabaseInstance"


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_the_replica_is_private_and_in_another_region() -> None:
    """read_replica(name, config, primary, network, labels, opts) in prod"""
    graph = declared("prod")
    primary = graph.one(SQL, "agents-pg")
    replica = graph.find(SQL, "agents-pg-replica")
    check(
        replica is not None,
        called="read_replica('agents-pg-replica', ...) in the prod stack",
        got=f"instances {[r.name for r in graph.of_type(SQL)]}",
        expected="an instance named agents-pg-replica",
    )
    assert replica is not None
    props = replica.props
    called = "read_replica in the prod stack (replicaRegion us-east1)"
    check(
        props.get("masterInstanceName") == primary.name
        and graph.depends_on(replica, primary),
        called=called,
        got=f"masterInstanceName {props.get('masterInstanceName')!r}",
        expected="the primary's name: a replica of the primary",
    )
    check(
        props.get("region") == "us-east1" != primary.props.get("region"),
        called=called,
        got=f"region {props.get('region')!r} (the primary is in "
        f"{primary.props.get('region')!r})",
        expected="config.replica_region, another region than the primary's",
    )
    settings = props.get("settings") or {}
    ip = settings.get("ipConfiguration") or {}
    check(
        ip.get("ipv4Enabled") is False and ip.get("privateNetwork"),
        called=called,
        got=f"ipConfiguration {ip}",
        expected="no public IP, a private IP on the VPC, like the primary",
    )
    check(
        props.get("databaseVersion") == "POSTGRES_16"
        and settings.get("tier") == (primary.props.get("settings") or {}).get("tier"),
        called=called,
        got={
            "databaseVersion": props.get("databaseVersion"),
            "tier": settings.get("tier"),
        },
        expected="the primary's version and tier: promoted, it carries the load",
    )
    check(
        settings.get("availabilityType") == "ZONAL"
        and (props.get("replicaConfiguration") or {}).get("failoverTarget") is False,
        called=called,
        got={
            "availabilityType": settings.get("availabilityType"),
            "replicaConfiguration": props.get("replicaConfiguration"),
        },
        expected="ZONAL, failover_target False: a read replica is promoted by an "
        "operator, never failed over to automatically",
    )
    connection = graph.one("gcp:servicenetworking/connection:Connection")
    check(
        graph.explicitly_depends_on(replica, connection),
        called=called,
        got="no depends_on the servicenetworking Connection",
        expected="depends_on the connection, like the primary: its private IP needs "
        "the peering, and no input says so",
    )
    labels = settings.get("userLabels") or {}
    check(
        props.get("deletionProtection") is True
        and settings.get("deletionProtectionEnabled") is True
        and all(labels.get(k) for k in REQUIRED),
        called=called,
        got=f"deletionProtection {props.get('deletionProtection')!r}, "
        f"deletionProtectionEnabled {settings.get('deletionProtectionEnabled')!r}, "
        f"labels {labels}",
        expected="deletion protection in prod (both settings), and the labels given",
    )


@pytest.mark.task(1)
def test_no_replica_without_a_replica_region() -> None:
    """read_replica is only called for stacks with agents:replicaRegion"""
    graph = declared("dev")
    check(
        [r.name for r in graph.of_type(SQL)] == ["agents-pg"],
        called="the dev stack (no replicaRegion)",
        got=[r.name for r in graph.of_type(SQL)],
        expected="only the primary",
    )


# Task 2 ----------------------------------------------------------------------

POOLS = {"agent-runtime-default": 3, "agent-runtime-enterprise": 2}


def normal(command: str) -> str:
    """kubectl's other spellings of a resource, as "statefulset NAME"."""
    for short, full in (
        ("statefulsets.apps/", "statefulset "),
        ("statefulset.apps/", "statefulset "),
        ("statefulset/", "statefulset "),
        ("sts/", "statefulset "),
        ("deployments.apps/", "deployment "),
        ("deployment.apps/", "deployment "),
        ("deployment/", "deployment "),
        ("deploy/", "deployment "),
        ("sts ", "statefulset "),
        ("deploy ", "deployment "),
    ):
        command = command.replace(short, full)
    return command


def first(steps: list[Step], *parts: str) -> int:
    """The index of the first step whose command has every part (-1 if none)."""
    for index, step in enumerate(steps):
        if all(part in normal(step.command) for part in parts):
            return index
    return -1


def plan(steps: list[Step]) -> str:
    return "; ".join(f"{n}. {step.name}" for n, step in enumerate(steps, start=1))


@pytest.mark.task(2)
def test_writers_stop_before_the_promotion() -> None:
    """promotion_steps(target_for("prod"))"""
    target = target_for("prod")
    steps = promotion_steps(target)
    promote = first(steps, "promote-replica", target.replica)
    check(
        promote >= 0,
        called='promotion_steps(target_for("prod"))',
        got=plan(steps),
        expected="a step running gcloud sql instances promote-replica on the replica",
    )
    stops = [first(steps, f"statefulset {name}", "--replicas=0") for name in POOLS]
    stops.append(first(steps, "deployment agent-gateway", "--replicas=0"))
    check(
        all(0 <= stop < promote for stop in stops),
        called='promotion_steps(target_for("prod"))',
        got=plan(steps),
        expected="every runner pool and the gateway scaled to 0 before the "
        "promotion: nothing may write to the old primary",
    )
    checks = first(steps, "describe", target.primary)
    check(
        0 <= checks < min(stops) and "RUNNABLE" in steps[checks].command,
        called='promotion_steps(target_for("prod"))',
        got=f"step {checks + 1}: {steps[checks].command}"
        if checks >= 0
        else plan(steps),
        expected="first a check that fails while the primary still serves (its "
        "state from gcloud sql instances describe is RUNNABLE)",
    )
    gone = next(
        (
            index
            for index, step in enumerate(steps)
            if "wait" in step.command and "delete" in step.command
        ),
        -1,
    )
    check(
        max(stops) < gone < promote,
        called='promotion_steps(target_for("prod"))',
        got=plan(steps),
        expected="after scaling to 0, a wait until the pods are gone (kubectl wait "
        "--for=delete): scaling returns at once, the pods take their grace period",
    )


@pytest.mark.task(2)
def test_the_secret_moves_before_anything_starts_again() -> None:
    """promotion_steps: after the promotion"""
    target = target_for("prod")
    steps = promotion_steps(target)
    promote = first(steps, "promote-replica")
    secret = next(
        (
            index
            for index, step in enumerate(steps)
            if index > promote and "agent-runtime-secrets" in step.command
        ),
        -1,
    )
    steps = [Step(step.name, normal(step.command)) for step in steps]
    starts = [
        index
        for index, step in enumerate(steps)
        if "scale" in step.command
        and "--replicas=0" not in step.command
        and index > promote
    ]
    check(
        promote < secret and starts and secret < min(starts),
        called='promotion_steps(target_for("prod"))',
        got=plan(steps),
        expected="DATABASE_URL repointed in the Kubernetes Secret the pods read "
        "(agent-runtime-secrets) after the promotion, before any runner or the "
        "gateway starts",
    )
    for name, replicas in POOLS.items():
        ups = [
            index for index in starts if f"statefulset {name}" in steps[index].command
        ]
        sizes = [steps[index].command.rsplit("=", 1)[-1] for index in ups]
        check(
            sizes[:1] == ["1"] and sizes[-1:] == [str(replicas)],
            called=f'promotion_steps(target_for("prod")): {name}',
            got=f"scaled to {sizes} after the promotion",
            expected=f"1 first (it resumes its runs from the new primary), then "
            f"{replicas} once the smoke test passed",
        )
    smoke = first(steps, "curl")
    gateway = first(steps, "deployment agent-gateway", "--replicas=3")
    full = first(steps, "statefulset agent-runtime-default", "--replicas=3")
    check(
        0 <= gateway < smoke < full,
        called='promotion_steps(target_for("prod"))',
        got=plan(steps),
        expected="the gateway back (3 replicas), a smoke test through the edge, "
        "then the pools scaled out",
    )
    refresh = first(steps, "pulumi", "refresh")
    check(
        refresh > promote,
        called='promotion_steps(target_for("prod"))',
        got=plan(steps),
        expected="a pulumi refresh at the end, so the state matches the promotion",
    )


# Task 3 ----------------------------------------------------------------------

STEPS = [Step("one", "echo one"), Step("two", "false"), Step("three", "echo three")]


@pytest.mark.task(3)
def test_a_dry_run_runs_nothing() -> None:
    """run_steps(steps, execute=False, shell)"""
    ran: list[str] = []
    said: list[str] = []

    def shell(command: str) -> int:
        ran.append(command)
        return 0

    code = run_steps(STEPS, False, shell, said.append)
    printed = "\n".join(said)
    check(
        ran == [] and code == 0,
        called="run_steps(three steps, execute=False, shell)",
        got=f"exit code {code}, shell called with {ran}",
        expected="exit code 0 and the shell never called",
    )
    check(
        all(step.command in printed and step.name in printed for step in STEPS),
        called="run_steps(three steps, execute=False, shell, say)",
        got=printed,
        expected="every step's name and command said, in order",
    )


@pytest.mark.task(3)
def test_a_real_run_stops_at_the_first_failure() -> None:
    """run_steps(steps, execute=True, shell) with a failing second step"""
    ran: list[str] = []
    said: list[str] = []

    def shell(command: str) -> int:
        ran.append(command)
        return 3 if command == "false" else 0

    code = run_steps(STEPS, True, shell, said.append)
    check(
        ran == ["echo one", "false"],
        called="run_steps(three steps, execute=True) where step 2 exits 3",
        got=f"shell called with {ran}",
        expected="steps 1 and 2 run, step 3 never",
    )
    check(
        code == 3 and any("two" in line for line in said[-2:]),
        called="run_steps(three steps, execute=True) where step 2 exits 3",
        got=f"exit code {code}; last words {said[-2:]}",
        expected="exit code 3, and the failed step named",
    )
    ran.clear()
    code = run_steps(STEPS[:1], True, shell, said.append)
    check(
        ran == ["echo one"] and code == 0,
        called="run_steps([one step that succeeds], execute=True)",
        got=f"exit code {code}, shell called with {ran}",
        expected="the step run once, exit code 0",
    )
