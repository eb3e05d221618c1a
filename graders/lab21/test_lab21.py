"""Lab 21: Cloud Armor and IAP in front of the edge, and the same rate limit in
the edge itself.

The policy and admin backend checks run the dev stack under Pulumi's mocks with
the learner's function swapped in; the limiter checks drive RateBasedBan with a
clock the test controls.
"""

from __future__ import annotations

from typing import Any

import pytest
from infra_support import declared

from capstone.edge.ratelimit import (
    ANONYMOUS_LIMIT,
    TENANT_HEADER,
    TENANT_LIMIT,
    RateBasedBan,
    RateLimit,
)
from course.check import check
from infra.labels import REQUIRED
from infra.testing import Graph

POLICY = "gcp:compute/securityPolicy:SecurityPolicy"
BACKEND = "gcp:compute/backendService:BackendService"
LOWEST = 2147483647


def rules(graph: Graph) -> list[dict[str, Any]]:
    return sorted(
        graph.one(POLICY).props.get("rules") or [], key=lambda r: r.get("priority", 0)
    )


def summary(found: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    return [(r.get("priority"), r.get("action")) for r in found]


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_sql_injection_is_refused() -> None:
    """security_policy(name, labels, opts): the WAF rule"""
    found = rules(declared("dev"))
    waf = [
        r
        for r in found
        if "sqli" in str(((r.get("match") or {}).get("expr") or {}).get("expression"))
    ]
    check(
        len(waf) == 1,
        called="security_policy('agent-edge-armor', labels, opts)",
        got=f"rules {summary(found)}",
        expected="one rule matching Google's preconfigured SQL injection expression",
    )
    rule = waf[0]
    expression = str(rule["match"]["expr"]["expression"]).replace(" ", "")
    check(
        expression.startswith("evaluatePreconfiguredWaf('sqli-")
        or expression.startswith("evaluatePreconfiguredExpr('sqli-"),
        called="security_policy: the SQL injection rule's match",
        got=expression,
        expected="Google's preconfigured rule itself, e.g. "
        "evaluatePreconfiguredWaf('sqli-v33-stable'), not negated",
    )
    check(
        rule.get("action") == "deny(403)" and not rule.get("preview"),
        called="security_policy: the SQL injection rule",
        got=f"action {rule.get('action')!r}, preview {rule.get('preview')!r}",
        expected="deny(403), enforced (not in preview, which only logs)",
    )
    rate_rules = [r for r in found if r.get("action") in ("rate_based_ban", "throttle")]
    check(
        all(rule["priority"] < r.get("priority", 0) for r in rate_rules),
        called="security_policy: the order of the rules",
        got=f"rules {summary(found)}",
        expected="the SQL injection rule first (the lowest number): a rate rule "
        "that matches ends the evaluation, so one before it hides it",
    )


@pytest.mark.task(1)
def test_a_tenant_over_its_rate_is_banned() -> None:
    """security_policy: the rate-based ban"""
    found = rules(declared("dev"))
    bans = [r for r in found if r.get("action") == "rate_based_ban"]
    check(
        len(bans) == 1,
        called="security_policy('agent-edge-armor', labels, opts)",
        got=f"rules {summary(found)}",
        expected="one rule with action rate_based_ban",
    )
    match = bans[0].get("match") or {}
    expression = str((match.get("expr") or {}).get("expression")).replace(" ", "")
    check(
        expression == f"has(request.headers['{TENANT_HEADER}'])",
        called="security_policy: which requests the ban counts",
        got=f"match {match}",
        expected=f"only requests that carry the header (WITH_TENANT): counted by "
        f"{TENANT_HEADER}, requests without it would all share one key",
    )
    options = bans[0].get("rateLimitOptions") or {}
    key = (options.get("enforceOnKey"), options.get("enforceOnKeyName"))
    check(
        key == ("HTTP_HEADER", TENANT_HEADER),
        called="security_policy: the rate-based ban's key",
        got=f"enforceOnKey {key[0]!r}, enforceOnKeyName {key[1]!r}",
        expected=f"HTTP_HEADER {TENANT_HEADER!r}: one budget per tenant, not per IP",
    )
    threshold = options.get("rateLimitThreshold") or {}
    numbers = (
        threshold.get("count"),
        threshold.get("intervalSec"),
        options.get("banDurationSec"),
    )
    check(
        numbers
        == (
            TENANT_LIMIT.count,
            TENANT_LIMIT.interval_seconds,
            TENANT_LIMIT.ban_seconds,
        ),
        called="security_policy: the rate-based ban's numbers",
        got=f"count, interval, ban = {numbers}",
        expected=f"TENANT_LIMIT's: {TENANT_LIMIT.count} per "
        f"{TENANT_LIMIT.interval_seconds} s, banned {TENANT_LIMIT.ban_seconds} s",
    )
    check(
        options.get("exceedAction") == "deny(429)"
        and options.get("conformAction") == "allow",
        called="security_policy: the rate-based ban's actions",
        got={k: options.get(k) for k in ("conformAction", "exceedAction")},
        expected="allow under the limit, deny(429) over it",
    )


@pytest.mark.task(1)
def test_callers_without_a_tenant_are_limited_by_address() -> None:
    """security_policy: the rule for requests without the header"""
    found = rules(declared("dev"))
    anonymous = [
        r
        for r in found
        if r.get("action") in ("throttle", "rate_based_ban")
        and (r.get("rateLimitOptions") or {}).get("enforceOnKey") == "IP"
    ]
    check(
        len(anonymous) == 1,
        called="security_policy('agent-edge-armor', labels, opts)",
        got=f"rules {summary(found)}",
        expected="one rate rule keyed on IP, for callers without the header",
    )
    rule = anonymous[0]
    expression = str(
        ((rule.get("match") or {}).get("expr") or {}).get("expression")
    ).replace(" ", "")
    threshold = (rule.get("rateLimitOptions") or {}).get("rateLimitThreshold") or {}
    check(
        expression == f"!has(request.headers['{TENANT_HEADER}'])"
        and threshold.get("count") == ANONYMOUS_LIMIT.count
        and threshold.get("intervalSec") == ANONYMOUS_LIMIT.interval_seconds,
        called="security_policy: the per-address rule",
        got=f"match {expression!r}, threshold {threshold}",
        expected=f"requests without the header, {ANONYMOUS_LIMIT.count} per "
        f"{ANONYMOUS_LIMIT.interval_seconds} s per IP (ANONYMOUS_LIMIT)",
    )


@pytest.mark.task(1)
def test_the_default_rule_lets_the_rest_through() -> None:
    """security_policy: the default rule and the labels"""
    graph = declared("dev")
    found = rules(graph)
    last = found[-1] if found else {}
    sources = ((last.get("match") or {}).get("config") or {}).get("srcIpRanges")
    check(
        last.get("priority") == LOWEST
        and last.get("action") == "allow"
        and sources == ["*"],
        called="security_policy: the lowest-priority rule",
        got=f"rules {summary(found)}, last matches {sources}",
        expected=f"priority {LOWEST}, action allow, for every source",
    )
    labels = graph.one(POLICY).props.get("labels") or {}
    check(
        all(labels.get(k) for k in REQUIRED),
        called="security_policy: labels",
        got=labels,
        expected=f"the labels given ({', '.join(REQUIRED)})",
    )


# Task 2 ----------------------------------------------------------------------


@pytest.mark.task(2)
def test_admin_routes_go_through_iap_and_armor() -> None:
    """admin_backend(name, config, endpoint_group, policy, opts)"""
    graph = declared("dev")
    admin = graph.find(BACKEND, "agent-edge-admin")
    check(
        admin is not None,
        called="admin_backend('agent-edge-admin', ...)",
        got=f"backend services {[b.name for b in graph.of_type(BACKEND)]}",
        expected="a BackendService named agent-edge-admin",
    )
    assert admin is not None
    iap = admin.props.get("iap") or {}
    check(
        iap.get("enabled") is True
        and iap.get("oauth2ClientId") == "test-client.apps.googleusercontent.com",
        called="admin_backend: IAP",
        got={k: iap.get(k) for k in ("enabled", "oauth2ClientId")},
        expected="IAP enabled, with the OAuth client from the stack config",
    )
    policy = graph.one(POLICY)
    neg = graph.one("gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup")
    check(
        admin.props.get("securityPolicy") and graph.depends_on(admin, policy),
        called="admin_backend: Cloud Armor",
        got=f"securityPolicy {admin.props.get('securityPolicy')!r}",
        expected="the same security policy as the public backend",
    )
    check(
        graph.depends_on(admin, neg)
        and admin.props.get("loadBalancingScheme") == "EXTERNAL_MANAGED",
        called="admin_backend: where it sends traffic",
        got={k: admin.props.get(k) for k in ("backends", "loadBalancingScheme")},
        expected="the edge's serverless endpoint group, EXTERNAL_MANAGED",
    )
    check(
        bool(iap.get("oauth2ClientSecret"))
        and (admin.props.get("logConfig") or {}).get("enable") is True,
        called="admin_backend: IAP's client secret and request logs",
        got={
            "oauth2ClientSecret": "set" if iap.get("oauth2ClientSecret") else None,
            "logConfig": admin.props.get("logConfig"),
        },
        expected="the OAuth client secret from the config, and request logging on "
        "(who reached the admin routes)",
    )
    grants = graph.of_type(
        "gcp:iap/webBackendServiceIamMember:WebBackendServiceIamMember"
    )
    check(
        all(graph.depends_on(grant, admin) for grant in grants),
        called="admin_backend: the IAP access grants",
        got=[g.props.get("webBackendService") for g in grants],
        expected="each grant on the admin backend itself (its name), not another",
    )
    members = [(m.props.get("member"), m.props.get("role")) for m in grants]
    check(
        members
        == [("group:agents-oncall@example.com", "roles/iap.httpsResourceAccessor")],
        called="admin_backend with adminMembers [group:agents-oncall@example.com]",
        got=members,
        expected="roles/iap.httpsResourceAccessor for each admin member, nobody else",
    )
    url_map = graph.one("gcp:compute/uRLMap:URLMap")
    check(
        graph.depends_on(url_map, admin),
        called="the URL map",
        got="no route to the admin backend",
        expected="/admin/* routed to the backend admin_backend returns",
    )


# Task 3 ----------------------------------------------------------------------


def send(limiter: RateBasedBan, key: str, count: int, now: float) -> list[bool]:
    return [limiter.check(key, now).allowed for _ in range(count)]


@pytest.mark.task(3)
def test_the_request_after_the_limit_is_refused() -> None:
    """RateBasedBan(TENANT_LIMIT).check(key, now)"""
    limiter = RateBasedBan(TENANT_LIMIT)
    allowed = send(limiter, "acme", TENANT_LIMIT.count, now=0.0)
    check(
        all(allowed),
        called=f"check('acme', now=0) {TENANT_LIMIT.count} times",
        got=f"{allowed.count(True)} allowed",
        expected=f"all {TENANT_LIMIT.count} allowed",
    )
    decision = limiter.check("acme", 1.0)
    check(
        not decision.allowed and decision.retry_after == TENANT_LIMIT.ban_seconds,
        called=f"check('acme', now=1) after {TENANT_LIMIT.count} requests",
        got=decision,
        expected=f"refused, retry_after {TENANT_LIMIT.ban_seconds} (the whole ban)",
    )
    other = limiter.check("globex", 1.0)
    check(
        other.allowed,
        called="check('globex', now=1) while acme is banned",
        got=other,
        expected="allowed: every tenant has its own budget",
    )


@pytest.mark.task(3)
def test_the_ban_lasts_and_then_ends() -> None:
    """RateBasedBan(RateLimit(3, 10, 30)).check over time"""
    limit = RateLimit(count=3, interval_seconds=10, ban_seconds=30)
    limiter = RateBasedBan(limit)
    send(limiter, "acme", 4, now=0.0)
    later = limiter.check("acme", 12.5)
    check(
        not later.allowed and later.retry_after == 18,
        called="check('acme', now=12.5) after a ban at now=0 (3 per 10 s, ban 30 s)",
        got=later,
        expected="still refused (the ban lasts 30 s, not one window), retry_after "
        "18: 17.5 s left, rounded up so a client never comes back too early",
    )
    after = limiter.check("acme", 31.0)
    check(
        after.allowed,
        called="check('acme', now=31) once the 30 s ban is over",
        got=after,
        expected="allowed again",
    )


@pytest.mark.task(3)
def test_a_new_window_starts_a_new_count() -> None:
    """RateBasedBan(RateLimit(3, 10, 30)): two windows"""
    limiter = RateBasedBan(RateLimit(count=3, interval_seconds=10, ban_seconds=30))
    first = send(limiter, "acme", 3, now=0.0)
    second = send(limiter, "acme", 3, now=10.5)
    check(
        all(first + second),
        called="check('acme') 3 times at now=0, 3 times at now=10.5 (3 per 10 s)",
        got=f"{(first + second).count(True)} of 6 allowed",
        expected="all 6: the count starts again in each window",
    )
