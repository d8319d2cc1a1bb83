"""``argus bench sweep``: every policy and the oracle across peak loads, with intervals over seeds.

One load point hides the trade-off the product exists for; the sweep runs the same trace scaled
to each peak (a multiple of the cluster's k0 capacity) for every policy, ``seeds`` times (each
seed redraws the prompt stream and, for rate-only traces, the arrivals), and reports each number
as the mean over seeds with a 95% t-interval. Simulated by default; ``live`` replays a short
compressed trace per load through the real stack (one tritonserver, one worker).

Outputs: ``sweep_<mode>.json`` (a list of points), three plots against load (violations, quality,
goodput; every policy on each), and a table at the headline load with the paper's goals checked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from orchestrator.bench.common import WARM_PROMPTS, build_workload, similarity_label, simulate
from orchestrator.paths import DOCS_DIR, paper_scale_profile
from orchestrator.policy.base import default_plan_interval_s
from orchestrator.policy.registry import policy_names
from orchestrator.profile.schema import Profile
from orchestrator.sim.oracle import oracle
from orchestrator.sim.workload import PromptSource, TraceSource, source_name

ORACLE = "oracle"
METRICS = ("violation_rate", "mean_rel_quality", "goodput_rps")


@dataclasses.dataclass
class SweepConfig:
    profile_path: Path = dataclasses.field(default_factory=paper_scale_profile)
    trace: str | TraceSource = "twitter"
    prompts: str | PromptSource = "world"
    num_workers: int = 8
    loads: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    """Peak offered load, as multiples of the cluster's k0 capacity at the SLO."""
    headline_load: float = 2.0
    """The paper's operating point: peaks about twice the k0 capacity."""
    seeds: int = 1
    duration_s: float | None = None
    """Compress the trace to this length (None: its own)."""
    slo_factor: float = 2.0
    live: bool = False
    live_minutes: float = 1.0
    """Live: each load's trace compressed to this many minutes (every policy replays it)."""
    out_dir: Path = DOCS_DIR
    quality_table: Path | None = None
    """A deployment's quality table: the fast/heavy scenario (``orchestrator.sim.labels``) instead of the profile's world."""
    fast: str = "sdxl-lightning-2step"
    base: str = "sd3.5-large-50step"
    table_format: object = None
    """``QualityTableFormat`` of ``quality_table`` (None: the HADIS table's columns)."""
    model_latency_s: dict[str, float] | None = None
    """Seconds per image of the table's models, over ``orchestrator.sim.labels.MODEL_LATENCY_S``."""


T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
"""Student-t 0.975 quantiles for 1..30 degrees of freedom (beyond: the normal 1.96)."""


def t975(df: int) -> float:
    return T975[df - 1] if 1 <= df <= len(T975) else 1.96


def ci95(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval of the mean; a single value is its own interval."""
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, mean, mean
    half = float(t975(len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return mean, mean - half, mean + half


def _point(row: dict, goodput_rps: float | None = None) -> dict[str, float]:
    """A bench table row (violations in %, quality, goodput) as a sweep point's metrics."""
    return {"violation_rate": row["slo_violation_pct"] / 100.0, "mean_rel_quality": row["mean_quality"],
            "goodput_rps": row["goodput_rps"] if goodput_rps is None else goodput_rps}


def _sim_point(cfg: SweepConfig, profile: Profile, load: float, seed: int) -> dict[str, dict[str, float]]:
    wl = build_workload(profile, cfg.trace, cfg.num_workers, load, cfg.duration_s, cfg.prompts, cfg.slo_factor, seed)
    return _policies_and_oracle(cfg, profile, wl)


def _policies_and_oracle(cfg: SweepConfig, profile: Profile, wl, **simulate_kw) -> dict[str, dict[str, float]]:
    """Every policy, then the offline oracle, on one workload: a sweep point's rows."""
    duration = max(wl.trace.duration_s, 1e-9)
    rows = simulate(profile, wl.requests, cfg.num_workers, policy_names(), duration, wl.slo_ms, wl.make_world, pair=wl.pair, **simulate_kw)
    out = {p: _point(r) for p, r in rows.items()}
    o = oracle(profile, wl.requests, cfg.num_workers, default_plan_interval_s(profile), wl.make_world())
    out[ORACLE] = _point(o, goodput_rps=(1 - o["slo_violation_pct"] / 100.0) * len(wl.requests) / duration)
    return out


def _label_point(cfg: SweepConfig, scenario, load: float, seed: int) -> dict[str, dict[str, float]]:
    """One load of the fast/heavy scenario: every policy on test prompts, argus predicting from text."""
    from orchestrator.bench.common import build_label_workload

    wl = build_label_workload(scenario, cfg.trace, cfg.num_workers, load, cfg.duration_s, cfg.slo_factor, seed)
    both = ("base", "fast")  # both models fit one L40S: no switching cost
    return _policies_and_oracle(cfg, scenario.profile, wl, colocated=both, text_predictor=scenario.predictor)


def label_goals(points: list[dict], headline: float) -> list[tuple[str, bool, str]]:
    """The fast/heavy scenario's goals at the headline load."""
    by = {(p["policy"], p["peak_load"]): p for p in points}
    a, n, o = by[("argus", headline)], by[("argus-noprompt", headline)], by[(ORACLE, headline)]
    gap = o["mean_rel_quality"] - n["mean_rel_quality"]
    closed = (a["mean_rel_quality"] - n["mean_rel_quality"]) / gap if gap > 0 else float("nan")
    return [(f"at {headline:g}x, argus closes at least 40% of the quality gap between argus-noprompt and the oracle", closed >= 0.4,
             f"argus {a['mean_rel_quality']:.3f}, argus-noprompt {n['mean_rel_quality']:.3f}, oracle {o['mean_rel_quality']:.3f}: "
             f"{100 * closed:.0f}% closed"),
            (f"at {headline:g}x, argus has no more violations than argus-noprompt", a["violation_rate"] <= n["violation_rate"],
             f"argus {100 * a['violation_rate']:.1f}% vs {100 * n['violation_rate']:.1f}%")]


def _live_point(cfg: SweepConfig, load: float, seed: int, worker: str) -> dict[str, dict[str, float]]:
    from orchestrator.bench.live import LiveBenchConfig, run_live_bench

    live = LiveBenchConfig(trace=cfg.trace, prompts=cfg.prompts, minutes=cfg.live_minutes, peak_load=load, seed=seed, worker=worker,
                           out_dir=cfg.out_dir / "sweep_live_runs" / f"load{load:g}_seed{seed}")
    result = run_live_bench(live, console=None)
    return {p: _point(r) for p, r in result["live"].items()}


def aggregate(samples: dict[tuple[str, float], list[dict[str, float]]]) -> list[dict]:
    """Per (policy, load): the mean of each metric over seeds, and its 95% interval."""
    points = []
    for (policy, load), runs in samples.items():
        point = {"policy": policy, "peak_load": load}
        interval = {}
        for m in METRICS:
            mean, lo, hi = ci95([r[m] for r in runs])
            top = float("inf") if m == "goodput_rps" else (1.0 if m == "violation_rate" else 2.0)  # an interval never leaves the metric's range
            point[m] = mean
            interval[m] = [max(lo, 0.0), min(hi, top)]
        points.append({**point, "ci95": {**interval, "seeds": len(runs)}})
    return points


def goals(points: list[dict], headline: float) -> list[tuple[str, bool, str]]:
    """The sweep's goals, each (goal, met, the numbers)."""
    by = {(p["policy"], p["peak_load"]): p for p in points}
    loads = sorted({p["peak_load"] for p in points})
    online = [p for p in policy_names() if ("argus", headline) in by and (p, headline) in by]
    out = []
    worst_gap = max(by[("argus", ld)]["violation_rate"] - min(by[(p, ld)]["violation_rate"] for p in online) for ld in loads)
    out.append(("argus has the fewest violations at every load, or within 1 point", worst_gap <= 0.01,
                f"largest gap to the fewest: {100 * worst_gap:.1f} points"))
    a = by[("argus", headline)]

    def fewer(other: str, factor: float) -> tuple[str, bool, str]:
        o = by[(other, headline)]["violation_rate"]
        ok = o > 0 and a["violation_rate"] * factor <= o  # with both at 0 the ratio cannot be tested
        return (f"at {headline:g}x, {factor:g}x fewer violations than {other}", ok,
                f"argus {100 * a['violation_rate']:.1f}% vs {100 * o:.1f}%" + ("" if o > 0 else " (untestable at 0)"))

    out.append(fewer("clipper-ha", 10))
    out.append(fewer("nirvana", 3))
    out.append(fewer("proteus", 3))
    ht = by[("clipper-ht", headline)]["mean_rel_quality"]
    out.append((f"at {headline:g}x, mean quality at least 10% above clipper-ht's", a["mean_rel_quality"] >= 1.1 * ht,
                f"{a['mean_rel_quality']:.3f} vs {ht:.3f} ({100 * (a['mean_rel_quality'] / max(ht, 1e-9) - 1):+.1f}%)"))
    if (ORACLE, headline) in by:
        orc = by[(ORACLE, headline)]["mean_rel_quality"]
        out.append((f"at {headline:g}x, mean quality within 3% of the oracle", a["mean_rel_quality"] >= 0.97 * orc,
                    f"{a['mean_rel_quality']:.3f} vs {orc:.3f} ({100 * (a['mean_rel_quality'] / max(orc, 1e-9) - 1):+.1f}%)"))
    return out


def plot(points: list[dict], out_dir: Path, mode: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    policies = list(dict.fromkeys(p["policy"] for p in points))
    labels = {"violation_rate": ("SLO violations (fraction of requests)", "violations"), "mean_rel_quality": ("mean relative quality", "quality"),
              "goodput_rps": ("goodput (requests/s within SLO)", "goodput")}
    for metric, (ylabel, short) in labels.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for policy in policies:
            pts = sorted((p for p in points if p["policy"] == policy), key=lambda p: p["peak_load"])
            x = [p["peak_load"] for p in pts]
            y = [p[metric] for p in pts]
            err = np.array([[p[metric] - p["ci95"][metric][0] for p in pts], [p["ci95"][metric][1] - p[metric] for p in pts]])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=policy, linestyle="--" if policy == ORACLE else "-")
        ax.set_xlabel("peak load (x the cluster's k0 capacity)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"sweep_{mode}_{short}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def markdown(points: list[dict], headline: float, goal_rows: list[tuple[str, bool, str]], header: str) -> str:
    lines = [header, "", f"At the operating point, {headline:g}x the k0 capacity (mean over seeds; 95% interval in brackets):", "",
             "| policy | SLO violations | mean rel. quality | goodput req/s |", "|---|---|---|---|"]
    for p in sorted((p for p in points if p["peak_load"] == headline), key=lambda p: (p["policy"] == ORACLE, p["policy"])):
        ci = p["ci95"]
        lines.append(f"| {p['policy']} | {100 * p['violation_rate']:.1f}% [{100 * ci['violation_rate'][0]:.1f}, {100 * ci['violation_rate'][1]:.1f}] "
                     f"| {p['mean_rel_quality']:.3f} [{ci['mean_rel_quality'][0]:.3f}, {ci['mean_rel_quality'][1]:.3f}] "
                     f"| {p['goodput_rps']:.3f} [{ci['goodput_rps'][0]:.3f}, {ci['goodput_rps'][1]:.3f}] |")
    lines += ["", "| goal | met | measured |", "|---|---|---|"]
    lines += [f"| {g} | {'yes' if ok else '**no**'} | {text} |" for g, ok, text in goal_rows]
    return "\n".join(lines) + "\n"


def run_sweep(cfg: SweepConfig, console=None) -> list[dict]:
    t0 = time.perf_counter()
    mode = "live" if cfg.live else ("labels" if cfg.quality_table is not None else "sim")
    scenario = None
    if cfg.quality_table is not None:
        from orchestrator.sim.labels import build_label_scenario

        if cfg.live:
            raise ValueError("--quality-table runs in the simulator only (its models are not served here)")
        scenario = build_label_scenario(cfg.quality_table, cfg.fast, cfg.base, cfg.table_format, latency_s=cfg.model_latency_s)
        profile = scenario.profile
    else:
        profile = Profile.load(cfg.profile_path)
    samples: dict[tuple[str, float], list[dict[str, float]]] = {}
    server = None
    worker = None
    if cfg.live:
        from orchestrator.bench.common import start_full_server
        from orchestrator.bench.live import LiveBenchConfig

        server = start_full_server(LiveBenchConfig().grpc_port)
        worker = server.config.grpc_url
    try:
        for load in cfg.loads:
            for seed in range(cfg.seeds):
                if scenario is not None:
                    rows = _label_point(cfg, scenario, load, seed)
                else:
                    rows = _live_point(cfg, load, seed, worker) if cfg.live else _sim_point(cfg, profile, load, seed)
                for policy, row in rows.items():
                    samples.setdefault((policy, load), []).append(row)
                if console:
                    console.print(f"load {load:g}x seed {seed}: " + ", ".join(f"{p} {100 * r['violation_rate']:.1f}%/{r['mean_rel_quality']:.3f}"
                                                                             for p, r in rows.items()))
    finally:
        if server is not None:
            server.stop()
    points = aggregate(samples)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / f"sweep_{mode}.json").write_text(json.dumps(points, indent=1) + "\n")
    plots = plot(points, cfg.out_dir, mode)
    workers = 1 if cfg.live else cfg.num_workers
    what = (f"the fast/heavy scenario of `{cfg.quality_table}` (k0 = {cfg.base}, fast = {cfg.fast}; test prompts only; "
            f"quality 1 + pct(fast) - pct(base) of the table's score, not ours)" if scenario is not None else
            f"{source_name(cfg.prompts)} prompts (simulated cache keyed on {similarity_label(cfg.prompts)}, "
            f"{WARM_PROMPTS} prompts cached first), profile `{cfg.profile_path.name}`")
    flags = " --live" if cfg.live else (f" --quality-table {cfg.quality_table} --fast {cfg.fast} --base {cfg.base}" if scenario is not None else "")
    header = (f"# Load sweep ({mode}): `argus bench sweep{flags} --seeds {cfg.seeds}`\n\n"
              f"Trace {source_name(cfg.trace)}, {what}, {workers} worker(s), "
              f"SLO {cfg.slo_factor:g}x the k0 batch-of-one latency; loads {', '.join(f'{x:g}' for x in cfg.loads)}x the k0 capacity; "
              f"{time.perf_counter() - t0:.0f} s on this machine. Plots: {', '.join(p.name for p in plots)}.")
    goal_fn = label_goals if scenario is not None else goals
    goal_rows = goal_fn(points, cfg.headline_load) if any(p["peak_load"] == cfg.headline_load for p in points) else []
    (cfg.out_dir / f"sweep_{mode}.md").write_text(markdown(points, cfg.headline_load, goal_rows, header))
    if console:
        from rich.table import Table

        table = Table(title=f"{mode}: mean over {cfg.seeds} seed(s), violations % / quality / goodput")
        table.add_column("policy")
        for load in cfg.loads:
            table.add_column(f"{load:g}x", justify="right")
        for policy in dict.fromkeys(p["policy"] for p in points):
            cells = []
            for load in cfg.loads:
                p = next(q for q in points if q["policy"] == policy and q["peak_load"] == load)
                cells.append(f"{100 * p['violation_rate']:.1f} / {p['mean_rel_quality']:.3f} / {p['goodput_rps']:.2f}")
            table.add_row(policy, *cells)
        console.print(table)
        for g, ok, text in goal_rows:
            console.print(f"{'[green]met[/green]' if ok else '[red]not met[/red]'}  {g}: {text}")
        console.print(f"wrote {cfg.out_dir / f'sweep_{mode}.json'}, sweep_{mode}.md and {len(plots)} plots in {time.perf_counter() - t0:.0f} s")
    return points
