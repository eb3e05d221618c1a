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
    return gcp.compute.SecurityPolicy(
        name,
        description="agents edge: SQL injection, per-tenant rate limit",
        type="CLOUD_ARMOR",
        labels=labels,
        rules=[
            gcp.compute.SecurityPolicyRuleArgs(
                priority=1000,
                action="deny(403)",
                description="SQL injection (Google's preconfigured rule)",
                match=gcp.compute.SecurityPolicyRuleMatchArgs(
                    expr=gcp.compute.SecurityPolicyRuleMatchExprArgs(
                        expression="evaluatePreconfiguredWaf('sqli-v33-stable')"
                    )
                ),
            ),
            gcp.compute.SecurityPolicyRuleArgs(
                priority=2000,
                action="rate_based_ban",
                description="per-tenant rate limit, ban on excess",
                match=gcp.compute.SecurityPolicyRuleMatchArgs(
                    expr=gcp.compute.SecurityPolicyRuleMatchExprArgs(
                        expression=WITH_TENANT
                    )
                ),
                rate_limit_options=gcp.compute.SecurityPolicyRuleRateLimitOptionsArgs(
                    rate_limit_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
                        count=TENANT_LIMIT.count,
                        interval_sec=TENANT_LIMIT.interval_seconds,
                    ),
                    ban_duration_sec=TENANT_LIMIT.ban_seconds,
                    conform_action="allow",
                    exceed_action="deny(429)",
                    enforce_on_key="HTTP_HEADER",
                    enforce_on_key_name=TENANT_HEADER,
                ),
            ),
            gcp.compute.SecurityPolicyRuleArgs(
                priority=2100,
                action="throttle",
                description="callers without a tenant header, per IP",
                match=gcp.compute.SecurityPolicyRuleMatchArgs(
                    expr=gcp.compute.SecurityPolicyRuleMatchExprArgs(
                        expression=f"!{WITH_TENANT}"
                    )
                ),
                rate_limit_options=gcp.compute.SecurityPolicyRuleRateLimitOptionsArgs(
                    rate_limit_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
                        count=ANONYMOUS_PER_IP_PER_MINUTE, interval_sec=60
                    ),
                    conform_action="allow",
                    exceed_action="deny(429)",
                    enforce_on_key="IP",
                ),
            ),
            gcp.compute.SecurityPolicyRuleArgs(
                priority=DEFAULT_RULE_PRIORITY,
                action="allow",
                description="everything else",
                match=gcp.compute.SecurityPolicyRuleMatchArgs(
                    versioned_expr="SRC_IPS_V1", config=ALL_SOURCES
                ),
            ),
        ],
        opts=opts,
    )


def admin_backend(
    name: str,
    config: StackConfig,
    endpoint_group: gcp.compute.RegionNetworkEndpointGroup,
    policy: gcp.compute.SecurityPolicy,
    opts: pulumi.ResourceOptions,
) -> gcp.compute.BackendService:
    """The backend for ``/admin/*``: the same edge, but only for Google identities
    IAP lets in (``adminMembers``), under the same Cloud Armor policy."""
    backend = gcp.compute.BackendService(
        name,
        load_balancing_scheme="EXTERNAL_MANAGED",
        protocol="HTTPS",
        backends=[gcp.compute.BackendServiceBackendArgs(group=endpoint_group.id)],
        security_policy=policy.id,
        iap=gcp.compute.BackendServiceIapArgs(
            enabled=True,
            oauth2_client_id=config.iap_client_id,
            oauth2_client_secret=config.iap_client_secret,
        ),
        log_config=gcp.compute.BackendServiceLogConfigArgs(enable=True),
        opts=opts,
    )
    for index, member in enumerate(config.admin_members):
        gcp.iap.WebBackendServiceIamMember(
            f"{name}-admin-{index}",
            project=config.project,
            web_backend_service=backend.name,
            role="roles/iap.httpsResourceAccessor",
            member=member,
            opts=opts,
        )
    return backend
