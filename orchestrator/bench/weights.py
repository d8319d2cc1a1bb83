"""``argus bench weights``: does each of the router's weights pay on the default stream?

The router (``orchestrator.policy.router``) has five hand-set weights on ``ClusterState``. Each was
tuned on one trace. This bench turns each off in turn and replays the sweep's default stream in
the simulator with every other setting unchanged, the same requests and the same worker speeds
(paired by seed), so a weight is kept only where turning it off measurably costs violations or
quality. Three of the weights exist for a machine whose speed is not the profile's (the slowdown,
the tail, the fallback): the simulator's workers therefore drift and scatter as measured live
(``SimConfig.speed_sigma``, ``batch_sigma``); ``--no-scatter`` runs at the profile's speed.

Output: ``weights.json`` (per setting, load and policy: the mean over seeds and the paired
difference from the default with its 95% interval) and ``weights.md``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from orchestrator.bench.common import build_label_workload, build_workload, simulate
from orchestrator.bench.sweep import ci95
from orchestrator.paths import DOCS_DIR, paper_scale_profile
from orchestrator.policy.router import ClusterState
from orchestrator.profile.schema import Profile

OFF: dict[str, tuple[tuple[str, float], ...]] = {
    "default": (),
    "slowdown_weight=0": (("slowdown_weight", 0.0),),
    "tail_devs=0": (("tail_devs", 0.0), ("fallback_devs", 0.0)),
    "no fallback": (("fallback_devs", ClusterState.tail_devs),),
    "congestion_weight=0": (("congestion_weight", 0.0),),
    "burst_weight=0": (("burst_weight", 0.0),),
    "price_step=0.05": (("price_step", 0.05),),
    "price per class": (("price_per_class", True),),
}
"""Each setting: the weights it changes from ``ClusterState``'s defaults. ``no fallback``: the second,
looser deadline check coincides with the tail (``fallback_devs`` = ``tail_devs``), so it is skipped.
``price_step=0.05``: the plan price's step before 2026-12-07 (10x the default), not an off switch.
``price per class``: one plan price per prompt class, the setting before 2026-12-07's sixth session."""


@dataclasses.dataclass
class WeightsConfig:
    profile_path: Path = dataclasses.field(default_factory=paper_scale_profile)
    trace: str = "twitter"
    prompts: str = "world"
    num_workers: int = 8
    loads: tuple[float, ...] = (1.0, 2.0, 3.0)
    """Peak offered load, as multiples of the cluster's k0 capacity (as the sweep's)."""
    seeds: int = 10
    policies: tuple[str, ...] = ("argus",)
    settings: tuple[str, ...] = tuple(OFF)
    speed_sigma: float = 0.15
    """Worker speed drift (``SimConfig.speed_sigma``): the std of the live speed brackets."""
    batch_sigma: float = 0.2
    """Per-batch scatter (``SimConfig.batch_sigma``): live at 2x (2026-12-07), the std of
    log(latency / the router's estimate) of batch-of-one answers was 0.18-0.24 per policy."""
    slo_factor: float = 2.0
    duration_s: float | None = None
    """Compress the trace to this many seconds (None: its own; a quality table: the sweep's ``LABEL_DURATION_S``)."""
    out_dir: Path = DOCS_DIR
    quality_table: Path | None = None
    """A deployment's quality table: its fast/heavy scenario (as ``argus bench sweep --quality-table``)
    instead of the world stream; the HADIS table's columns and models."""
    fast: str = "sdxl-lightning-2step"
    base: str = "sd3.5-large-50step"


def run_weights(cfg: WeightsConfig, console=None) -> dict:
    t0 = time.perf_counter()
    for s in cfg.settings:
        if s not in OFF:
            raise ValueError(f"unknown setting {s!r}: one of {', '.join(OFF)}")
    scenario, kw = None, {}
    if cfg.quality_table is not None:
        from orchestrator.sim.labels import LABEL_DURATION_S, build_label_scenario

        scenario = build_label_scenario(cfg.quality_table, cfg.fast, cfg.base)
        profile, kw = scenario.profile, {"colocated": ("base", "fast"), "text_predictor": scenario.predictor}
        duration_s = cfg.duration_s or LABEL_DURATION_S
    else:
        profile, duration_s = Profile.load(cfg.profile_path), cfg.duration_s
    raw: dict[tuple[str, float, str], list[dict]] = {}
    for load in cfg.loads:
        for seed in range(cfg.seeds):
            if scenario is not None:
                wl = build_label_workload(scenario, cfg.trace, cfg.num_workers, load, duration_s, cfg.slo_factor, seed)
            else:
                wl = build_workload(profile, cfg.trace, cfg.num_workers, load, duration_s, cfg.prompts, cfg.slo_factor, seed)
            duration = max(wl.trace.duration_s, 1e-9)
            for setting in cfg.settings:
                rows = simulate(profile, wl.requests, cfg.num_workers, cfg.policies, duration, wl.slo_ms, wl.make_world, pair=wl.pair,
                                speed_sigma=cfg.speed_sigma, batch_sigma=cfg.batch_sigma, scatter_seed=seed, state_overrides=OFF[setting], **kw)
                for policy, r in rows.items():
                    raw.setdefault((setting, load, policy), []).append({"violation_rate": r["slo_violation_pct"] / 100.0,
                                                                        "mean_rel_quality": r["mean_quality"]})
            if console:
                console.print(f"load {load:g}x seed {seed} ({time.perf_counter() - t0:.0f} s)")
    points = []
    for (setting, load, policy), rows in raw.items():
        base = raw[("default", load, policy)]
        p = {"setting": setting, "peak_load": load, "policy": policy}
        for m in ("violation_rate", "mean_rel_quality"):
            p[m] = float(np.mean([r[m] for r in rows]))
            d = ci95([r[m] - b[m] for r, b in zip(rows, base)])
            p[f"{m}_minus_default"], p[f"{m}_minus_default_ci95"] = d[0], [d[1], d[2]]
        points.append(p)
    out = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()},
           "settings": {s: dict(OFF[s]) for s in cfg.settings}, "points": points, "wall_s": round(time.perf_counter() - t0, 1)}
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "weights.json").write_text(json.dumps(out, indent=1) + "\n")
    (cfg.out_dir / "weights.md").write_text(markdown(out))
    if console:
        console.print(markdown(out))
    return out


def markdown(out: dict) -> str:
    c = out["config"]
    flags = f" --quality-table {c['quality_table']}" if c.get("quality_table") else ""
    what = f"the fast/heavy scenario of {c['quality_table']}" if c.get("quality_table") else f"{c['prompts']} prompts"
    lines = [f"# Router weights, each turned off: `argus bench weights{flags} --seeds {c['seeds']}`\n",
             f"Trace {c['trace']}, {what}, {c['num_workers']} simulated workers, speed drift sigma {c['speed_sigma']} "
             f"per minute and batch scatter sigma {c['batch_sigma']}; mean over {c['seeds']} seeds, and the paired difference "
             f"from the default with its 95% interval; {out['wall_s']:.0f} s on this machine.\n"]
    for policy in c["policies"]:
        lines += [f"\n## {policy}\n", "| setting | " + " | ".join(f"{x:g}x violations / quality" for x in c["loads"]) + " |",
                  "|---|" + "---|" * len(c["loads"])]
        for setting in out["settings"]:
            cells = []
            for load in c["loads"]:
                p = next(q for q in out["points"] if q["setting"] == setting and q["peak_load"] == load and q["policy"] == policy)
                cell = f"{100 * p['violation_rate']:.2f}% / {p['mean_rel_quality']:.3f}"
                if setting != "default":
                    lo, hi = p["violation_rate_minus_default_ci95"]
                    qlo, qhi = p["mean_rel_quality_minus_default_ci95"]
                    cell += f" (Δ {100 * p['violation_rate_minus_default']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] / "
                    cell += f"{p['mean_rel_quality_minus_default']:+.3f} [{qlo:+.3f}, {qhi:+.3f}])"
                cells.append(cell)
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
