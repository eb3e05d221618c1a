"""Artifact Registry: where CI pushes the runtime, gateway and edge images.

Tags are immutable, so a git SHA always names the same image; old untagged images
are cleaned up.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig

REPOSITORY = "agents"


def image_repository(
    config: StackConfig, labels: dict[str, str], opts: pulumi.ResourceOptions
) -> gcp.artifactregistry.Repository:
    return gcp.artifactregistry.Repository(
        "images",
        location=config.region,
        repository_id=REPOSITORY,
        format="DOCKER",
        description="Images of the runtime, gateway and edge, tagged by git SHA",
        docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(
            immutable_tags=True
        ),
        cleanup_policies=[
            gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                id="drop-untagged",
                action="DELETE",
                condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                    tag_state="UNTAGGED", older_than="604800s"
                ),
            )
        ],
        labels=labels,
        opts=opts,
    )
