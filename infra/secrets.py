"""Secret Manager holds the secrets; Kubernetes gets a projection of them.

The values come from the stack's encrypted config (``pulumi config set --secret``)
or from resources (the database URL), never from the repository. Each secret is
readable only by the service accounts that need it (``identity.py``). The pods read
them as environment variables from one Kubernetes Secret that Pulumi writes from
the same values; GKE encrypts Secrets at rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.config import as_secret

# Environment variable name -> Secret Manager secret id.
RUNTIME_SECRETS = {"DATABASE_URL": "database-url", "OPENAI_API_KEY": "openai-api-key"}


@dataclass
class StoredSecret:
    env_name: str
    secret: gcp.secretmanager.Secret
    value: pulumi.Output[str]

    @property
    def secret_id(self) -> str:
        return RUNTIME_SECRETS[self.env_name]


def stored_secret(
    env_name: str,
    value: pulumi.Output[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> StoredSecret:
    secret_id = RUNTIME_SECRETS[env_name]
    secret = gcp.secretmanager.Secret(
        secret_id,
        secret_id=secret_id,
        replication=gcp.secretmanager.SecretReplicationArgs(
            auto=gcp.secretmanager.SecretReplicationAutoArgs()
        ),
        labels=labels,
        opts=opts,
    )
    gcp.secretmanager.SecretVersion(
        f"{secret_id}-current",
        secret=secret.id,
        secret_data=as_secret(value),
        opts=opts,
    )
    return StoredSecret(env_name, secret, as_secret(value))
