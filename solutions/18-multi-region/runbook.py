"""Promote the cross-region replica when the primary's region is lost.

    python -m infra.runbook --stack prod              print the plan: runs nothing
    python -m infra.runbook --stack prod --execute    run it, one step at a time

The order is the point. Writers stop before the promotion, so nothing writes to
the old primary if its region comes back (two primaries, two histories). The
secret moves before anything starts again. Runners come back one at a time: the
first resumes the unfinished runs from the new primary, then the pool scales out.
Each step is a shell command an on-call engineer could type; ``--execute`` stops
at the first one that fails and says which.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Step:
    name: str
    command: str


@dataclass(frozen=True)
class Target:
    """What the runbook acts on, from the stack's config and outputs."""

    stack: str
    project: str
    namespace: str
    primary: str
    replica: str
    pools: tuple[tuple[str, int], ...]
    gateway_replicas: int
    edge_url: str


def target_for(stack: str) -> Target:
    """The stack's target; instance names come from its outputs when it runs."""
    path = INFRA / f"Pulumi.{stack}.yaml"
    if not path.exists():
        stacks = sorted(p.name.split(".")[1] for p in INFRA.glob("Pulumi.*.yaml"))
        raise SystemExit(f"no stack {stack!r}; the stacks are {', '.join(stacks)}")
    config = yaml.safe_load(path.read_text())["config"]
    if not config.get("agents:replicaRegion"):
        raise SystemExit(f"stack {stack} has no read replica (agents:replicaRegion)")
    output = f"pulumi -C infra stack output --stack {stack}"
    return Target(
        stack=stack,
        project=config["gcp:project"],
        namespace="agents",
        primary=f"$({output} cloudSqlInstance)",
        replica=f"$({output} cloudSqlReplica)",
        pools=tuple(
            (f"agent-runtime-{pool['name']}", int(pool.get("replicas", 2)))
            for pool in config.get("agents:runnerPools", [{"name": "default"}])
        ),
        gateway_replicas=int(config.get("agents:gatewayReplicas", 2)),
        edge_url=f"https://{config['agents:edgeDomain']}",
    )


def promotion_steps(target: Target) -> list[Step]:
    """The promotion, in the order it must happen."""
    kubectl = f"kubectl -n {target.namespace}"
    gcloud_sql = f"gcloud sql instances --project {target.project}"

    def scale_runners(replicas: int | None) -> list[Step]:
        return [
            Step(
                f"scale {name} to {count if replicas is None else replicas}",
                f"{kubectl} scale statefulset {name} "
                f"--replicas={count if replicas is None else replicas}",
            )
            for name, count in target.pools
        ]

    return [
        Step(
            "check NEW_DATABASE_URL names the replica (its private IP)",
            'test -n "$NEW_DATABASE_URL"',
        ),
        Step(
            "confirm the primary is not serving (fails while it is RUNNABLE)",
            f'test "$({gcloud_sql} describe {target.primary} '
            "--format='value(state)')\" != RUNNABLE",
        ),
        *scale_runners(0),
        Step(
            "stop the gateway",
            f"{kubectl} scale deployment agent-gateway --replicas=0",
        ),
        Step(
            "wait until no runner or gateway pod is left",
            f"{kubectl} wait --for=delete pod "
            "-l 'workload in (agent-runtime, agent-gateway)' --timeout=180s",
        ),
        Step(
            "promote the replica to a standalone primary",
            f"{gcloud_sql} promote-replica {target.replica} --quiet",
        ),
        Step(
            "point DATABASE_URL at the new primary",
            f"{kubectl} patch secret agent-runtime-secrets --type merge "
            '-p "{\\"stringData\\":{\\"DATABASE_URL\\":\\"$NEW_DATABASE_URL\\"}}"',
        ),
        *scale_runners(1),
        Step(
            "wait for the first runners to be ready",
            " && ".join(
                f"{kubectl} rollout status statefulset {name} --timeout=300s"
                for name, _ in target.pools
            ),
        ),
        Step(
            "start the gateway",
            f"{kubectl} scale deployment agent-gateway "
            f"--replicas={target.gateway_replicas}",
        ),
        Step(
            "wait for the gateway to be ready",
            f"{kubectl} rollout status deployment agent-gateway --timeout=300s",
        ),
        Step(
            "smoke test through the edge (the gateway reaches the new primary)",
            f"curl -fsS {target.edge_url}/readyz",
        ),
        *scale_runners(None),
        Step(
            "bring Pulumi's state in line with the promotion",
            f"pulumi -C infra refresh --stack {target.stack} --yes",
        ),
    ]


Shell = Callable[[str], int]


def run_steps(
    steps: list[Step],
    execute: bool,
    shell: Shell,
    say: Callable[[str], None] = print,
) -> int:
    """Print the plan (``execute`` false, nothing runs) or run it step by step,
    stopping at the first command that fails. Returns the exit code."""
    for number, step in enumerate(steps, start=1):
        say(f"{number:2d}. {step.name}\n      $ {step.command}")
        if not execute:
            continue
        code = shell(step.command)
        if code != 0:
            say(f"step {number} ({step.name}) failed with exit code {code}; stopping")
            return code
    say("dry run: nothing was run" if not execute else "promotion done")
    return 0


def bash(command: str) -> int:
    return subprocess.run(["bash", "-c", command], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument(
        "--execute", action="store_true", help="run the commands (default: print)"
    )
    args = parser.parse_args(argv)
    steps = promotion_steps(target_for(args.stack))
    return run_steps(steps, args.execute, bash)


if __name__ == "__main__":
    sys.exit(main())
