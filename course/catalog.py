"""The 25 labs, in course order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LabEntry:
    number: int
    slug: str
    title: str

    @property
    def folder(self) -> str:
        return f"{self.number:02d}-{self.slug}"

    @property
    def grader(self) -> Path:
        return REPO / "graders" / f"lab{self.number:02d}"

    @property
    def available(self) -> bool:
        return (self.grader / "lab.toml").exists()


LABS = [
    LabEntry(1, "the-contract", "The contract: edge, runtime, database"),
    LabEntry(2, "kubernetes-for-docker-operators", "Kubernetes for Docker operators"),
    LabEntry(3, "one-process-one-graph", "One process, one dependency graph"),
    LabEntry(4, "pulumi-platform", "Pulumi platform"),
    LabEntry(5, "local-lab-ladder", "Local lab ladder and tests"),
    LabEntry(6, "addresses-and-gateway", "Addresses and the gateway"),
    LabEntry(7, "identity-and-secrets", "Identity and secrets"),
    LabEntry(8, "observability", "Observability"),
    LabEntry(9, "operations", "Operations"),
    LabEntry(10, "session-entities", "Session entities"),
    LabEntry(11, "durable-workflows", "Durable workflows"),
    LabEntry(12, "realtime", "Realtime: WebSocket and SSE with replay"),
    LabEntry(13, "capacity-model", "Capacity model"),
    LabEntry(14, "event-store", "State and the event store"),
    LabEntry(15, "release-engineering", "Release engineering"),
    LabEntry(16, "reliability-targets", "Reliability targets"),
    LabEntry(17, "governance", "Governance"),
    LabEntry(18, "multi-region", "Multi-region"),
    LabEntry(19, "runner-pools", "Runner pools"),
    LabEntry(20, "typed-rpc", "Typed RPC"),
    LabEntry(21, "cloud-armor-and-iap", "Cloud Armor and IAP"),
    LabEntry(22, "cost-attribution", "Cost attribution"),
    LabEntry(23, "capstone", "Capstone"),
    LabEntry(24, "troubleshooting", "Troubleshooting"),
    LabEntry(25, "teardown", "Teardown"),
]


def lab(number: int) -> LabEntry:
    for entry in LABS:
        if entry.number == number:
            return entry
    raise KeyError(f"there is no lab {number}; labs are numbered 1 to {len(LABS)}")
