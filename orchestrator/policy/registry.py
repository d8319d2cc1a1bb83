"""Every policy by name: importing this module registers the baselines and the planned policies."""

from __future__ import annotations

from orchestrator.policy import baselines, planned  # noqa: F401 - registers them
from orchestrator.policy.base import POLICIES, Policy, PolicyContext


def policy_names() -> tuple[str, ...]:
    """Registered policies, argus first, then the baselines alphabetically (the tables' row order)."""
    return tuple(sorted(POLICIES, key=lambda n: (n != "argus", n)))


def make_policy(name: str, ctx: PolicyContext) -> Policy:
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(policy_names())}")
    return POLICIES[name](ctx)


def parse_policies(text: str) -> tuple[str, ...]:
    """'all' or a comma-separated list -> policy names; an unknown name is a ValueError naming the choices."""
    names = policy_names() if text.strip() == "all" else tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = sorted(set(names) - set(POLICIES))
    if unknown or not names:
        raise ValueError(f"unknown policies {unknown or [text]}; choose from all, {', '.join(policy_names())}")
    return names
