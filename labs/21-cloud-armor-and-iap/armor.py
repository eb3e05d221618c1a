"""Cloud Armor in front of the edge's load balancer, and IAP on the admin routes.

The security policy refuses SQL injection attempts with Google's preconfigured
rule, bans a tenant that sends more than ``TENANT_LIMIT`` requests (keyed on the
``x-tenant-id`` header, the same rule the edge runs locally in
``capstone/edge/ratelimit.py``), and lets the rest through with an explicit
lowest-priority rule. Refusing here costs nothing downstream: no edge instance,
no gateway, no model tokens.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from capstone.edge.ratelimit import ANONYMOUS_LIMIT, TENANT_HEADER, TENANT_LIMIT
from infra.config import StackConfig

DEFAULT_RULE_PRIORITY = 2147483647
ALL_SOURCES = gcp.compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"])
# Requests without the tenant header are throttled per client IP instead: counted
# under the header, they would all share one key, and a hundred of them (from
# anyone) would ban every header-less caller, admins on /admin included.
WITH_TENANT = f"has(request.headers['{TENANT_HEADER}'])"
ANONYMOUS_PER_IP_PER_MINUTE = ANONYMOUS_LIMIT.count


def security_policy(
    name: str, labels: dict[str, str], opts: pulumi.ResourceOptions
) -> gcp.compute.SecurityPolicy:
    """The edge's policy: a WAF rule, a per-tenant rate-based ban, a per-address
    throttle for callers without a tenant, and a default rule."""
    raise NotImplementedError("Task 1: a Cloud Armor policy: WAF rule, per-tenant ban, per-address throttle, default rule")


def admin_backend(
    name: str,
    config: StackConfig,
    endpoint_group: gcp.compute.RegionNetworkEndpointGroup,
    policy: gcp.compute.SecurityPolicy,
    opts: pulumi.ResourceOptions,
) -> gcp.compute.BackendService:
    """The backend for ``/admin/*``: the same edge, but only for Google identities
    IAP lets in (``adminMembers``), under the same Cloud Armor policy."""
    raise NotImplementedError("Task 2: IAP on the admin routes")
