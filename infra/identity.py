"""Who each workload is in Google Cloud, without a key file anywhere.

A pod runs as a Kubernetes service account; workload identity lets that account
act as a Google service account, through one IAM binding on the Google account
(``roles/iam.workloadIdentityUser`` for ``PROJECT.svc.id.goog[NAMESPACE/KSA]``) and
one annotation on the Kubernetes account. Each Google account gets only the roles
its workload uses, on the narrowest resource that takes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.secrets import StoredSecret

# No roles/cloudsql.client: pods reach Cloud SQL on its private IP with a password,
# not through the Cloud SQL connector, which is what that role is for.
RUNTIME_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/cloudtrace.agent",
)
EDGE_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/cloudtrace.agent",
)


@dataclass
class Workload:
    """A Google service account and the Kubernetes one it stands for (if any)."""

    account: gcp.serviceaccount.Account
    kubernetes_name: str | None

    @property
    def email(self) -> pulumi.Output[str]:
        email: pulumi.Output[str] = self.account.email
        return email


def workload_identity(
    name: str,
    config: StackConfig,
    roles: tuple[str, ...],
    secrets: list[StoredSecret],
    kubernetes_name: str | None,
    opts: pulumi.ResourceOptions,
) -> Workload:
    account = gcp.serviceaccount.Account(
        name,
        account_id=name,
        display_name=f"agents {name} ({config.env})",
        opts=opts,
    )
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    if kubernetes_name is not None:
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=account.name,
            role="roles/iam.workloadIdentityUser",
            member=f"serviceAccount:{config.project}.svc.id.goog"
            f"[{config.namespace}/{kubernetes_name}]",
            opts=opts,
        )
    for role in roles:
        gcp.projects.IAMMember(
            f"{name}-{role.rsplit('/', 1)[-1]}",
            project=config.project,
            role=role,
            member=member,
            opts=opts,
        )
    for stored in secrets:
        gcp.secretmanager.SecretIamMember(
            f"{name}-reads-{stored.secret_id}",
            secret_id=stored.secret.id,
            role="roles/secretmanager.secretAccessor",
            member=member,
            opts=opts,
        )
    return Workload(account, kubernetes_name)
