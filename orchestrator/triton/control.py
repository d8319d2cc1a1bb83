"""Applying plans through Triton's model-control API: instance counts by full-config override.

Gotchas from ../shared/design/triton-on-cpu.md: an override replaces the whole config (G5), so the
current config is read and only ``instance_group`` changed; with the repository precompiled (G3)
the reload is in place: old instances keep serving until the new ones are ready.
"""

from __future__ import annotations

import json

import numpy as np

from orchestrator.triton.repository import denoiser_name


def _count(cfg: dict) -> int:
    return sum(int(g.get("count", 1)) for g in cfg.get("instance_group", [])) or 1


def instance_count(client, model: str) -> int:
    return _count(client.get_model_config(model, as_json=True)["config"])


def set_instance_count(client, model: str, count: int) -> bool:
    """Make ``model`` run ``count`` CPU instances; False when it already does."""
    cfg = client.get_model_config(model, as_json=True)["config"]
    if _count(cfg) == count:
        return False
    cfg["instance_group"] = [{"kind": "KIND_CPU", "count": count}]
    client.load_model(model, config=json.dumps(cfg))
    return True


def desired_instances(family: str, variants: list[str], fractions: np.ndarray, class_mix: np.ndarray, max_instances: int = 2) -> dict[str, int]:
    """Denoiser instances on a worker of ``family``: the variants carrying most of the planned
    traffic of that family get ``max_instances`` (so same-K batches of them can overlap), the rest one."""
    share = class_mix @ fractions  # (V,) planned share of all traffic per variant
    mine = {v: float(s) for v, s in zip(variants, share) if (v == "fast") == (family == "fast")}
    total = sum(mine.values())
    out = {}
    for v, s in mine.items():
        out[denoiser_name(v)] = max_instances if total > 0 and s / total >= 0.5 else 1
    return out
