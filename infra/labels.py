"""Labels every resource carries, so billing and on-call can group by them."""

from __future__ import annotations

REQUIRED = ("tenant", "env", "app", "component")
APP = "agents"


def labels(tenant: str, env: str, component: str) -> dict[str, str]:
    """The four labels: who pays (tenant), where (env), what (app, component)."""
    return {"tenant": tenant, "env": env, "app": APP, "component": component}
