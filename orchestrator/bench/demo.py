"""The main job on the embedded default: serve a short real workload through Triton, report it.

Phases: start Triton -> encode prompts -> full-quality generation (K=0, keeping each prompt's
latents at every step-skip level) -> approximate generation (each K>0 starts from the latent of
the most similar *other* prompt, as the cache would serve it) -> the fast model -> score every
image -> write a grid PNG, per-image PNGs and a report.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image

from orchestrator.triton import cache as cache_client
from orchestrator.triton.client import generate_with_levels, infer_input
from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, variant_k, write_repository
from orchestrator.paths import CPU_PROFILE, RUNS_DIR
from orchestrator.triton.server import TritonConfig, TritonServer
from orchestrator.sim.workload import SHARED, real_prompts, world_prompt_stream
from tiny_model.models import WEIGHTS_DIR
from tiny_model.world import sample_scene



@dataclasses.dataclass
class DemoConfig:
    out_dir: Path = RUNS_DIR / "demo"
    num_simple: int = 6
    num_hard: int = 6
    num_real: int = 4
    """Real prompts from ../shared/data/prompts/drawbench.csv (skipped when absent)."""
    seed: int = 0
    grpc_port: int = 18201
    batch_size: int = 8
    profile_path: Path = CPU_PROFILE
    """The profile the orchestrator's policies read (written by `argus profile`)."""
    burst_seconds: float = 10.0
    burst_load: float = 2.0
    """Offered load of the orchestrator phase, as a multiple of the profiled k0 capacity."""
    frontdoor_port: int = 18210


@dataclasses.dataclass
class VariantRun:
    variant: str
    images: np.ndarray
    latency_s: list[float]
    source: list[int]  # index of the prompt whose cached latent this generation started from (-1: noise)


def workload(cfg: DemoConfig) -> tuple[list[str], list[str]]:
    """(prompts, kinds): world prompts of graded difficulty plus a few real ones."""
    rng = random.Random(cfg.seed)
    prompts = [sample_scene(rng, "simple").caption() for _ in range(cfg.num_simple)]
    prompts += [sample_scene(rng, "hard" if i % 3 else "counting").caption() for i in range(cfg.num_hard)]
    kinds = ["simple"] * cfg.num_simple + ["hard"] * cfg.num_hard
    if cfg.num_real and (SHARED / "prompts" / "drawbench.csv").exists():
        rows = real_prompts("drawbench")[: cfg.num_real]
        prompts += rows
        kinds += ["real"] * len(rows)
    return prompts, kinds


def nearest_other(emb: np.ndarray) -> np.ndarray:
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def run_variant(client, variant: str, prompts: list[str], seeds: list[int], batch: int, start: np.ndarray | None, levels: bool):
    images, level_latents, lat = [], [], []
    for i in range(0, len(prompts), batch):
        t = time.perf_counter()
        im, lv = generate_with_levels(
            client, prompts[i : i + batch], seeds[i : i + batch], variant, None if start is None else start[i : i + batch], levels=levels
        )
        lat.append(time.perf_counter() - t)
        images.append(im)
        if lv is not None:
            level_latents.append(lv)
    return np.concatenate(images), (np.concatenate(level_latents) if level_latents else None), lat


def save_grid(path: Path, rows: list[list[np.ndarray]], scale: int = 3) -> None:
    h, w = rows[0][0].shape[:2]
    grid = Image.new("RGB", (len(rows[0]) * w * scale, len(rows) * h * scale), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            grid.paste(Image.fromarray(img).resize((w * scale, h * scale), Image.Resampling.NEAREST), (c * w * scale, r * h * scale))
    grid.save(path)


def run_orchestrated(cfg: DemoConfig, worker: str, log) -> dict:
    """An open-loop burst at ``burst_load`` x the k0 capacity through the front door (argus policy)."""
    import threading

    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.frontdoor import serve

    fd_cfg = FrontDoorConfig(workers=[worker], profile_path=cfg.profile_path, policy="argus", port=cfg.frontdoor_port, metrics_port=None, http_port=None,
                             allow_unauthenticated=True, plan_interval_s=1.0)
    server, engine = serve(fd_cfg)
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{cfg.frontdoor_port}")
        rate = cfg.burst_load * 1000.0 / engine.profile.variants["k0"].latency_ms[1]
        n = max(1, int(rate * cfg.burst_seconds))
        log(f"orchestrator: {n} requests of the default world stream (real reuse) at {rate:.1f} req/s ({cfg.burst_load}x the k0 capacity) "
            "through the front door, policy argus")
        stream = world_prompt_stream(n, seed=0)
        results: list = []
        lock = threading.Lock()

        def cb(result=None, error=None):
            with lock:
                results.append(error if error is not None else result.get_response(as_json=True)["parameters"]["variant"]["string_param"])

        t0 = time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            client.async_infer("t2i", [infer_input("PROMPT", np.array([stream[i].encode()], dtype=np.object_), "BYTES")], cb)
        deadline = time.monotonic() + 300
        while len(results) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        variants = [r for r in results if isinstance(r, str)]
        m = engine.metrics
        summary = {
            "requests": n,
            "served": len(variants),
            "errors": len(results) - len(variants),
            "error_messages": sorted({f"{r.status()}: {r.message()}" for r in results if not isinstance(r, str)}),
            "variant_mix": {v: variants.count(v) for v in sorted(set(variants))},
            "slo_violations": m.value("argus_slo_violations_total"),
            "planned_quality": m.value("argus_planned_quality"),
            "offered_rps": rate,
        }
        log(f"orchestrator: served {summary['served']}/{n}, variants {summary['variant_mix']}, SLO violations {summary['slo_violations']:.0f}"
            + (f", not served: {summary['error_messages']}" if summary["errors"] else ""))
        return summary
    finally:
        server.stop(0)
        engine.close()


def run_demo(cfg: DemoConfig, repo_cfg: RepositoryConfig = RepositoryConfig(), console=None) -> dict:
    from tiny_model.quality import QualityScorer

    log = console.print if console else print
    write_repository(repo_cfg, PROJECT_REPOSITORY)
    prompts, kinds = workload(cfg)
    seeds = list(range(cfg.seed, cfg.seed + len(prompts)))
    tcfg = TritonConfig(grpc_port=cfg.grpc_port, http_port=cfg.grpc_port - 1, metrics_port=cfg.grpc_port + 1, load_models=tuple(models_to_load(repo_cfg)))
    t0 = time.perf_counter()
    log(f"starting tritonserver with {len(tcfg.load_models)} models (+ their ensemble steps) ...")
    runs: dict[str, VariantRun] = {}
    with TritonServer(tcfg) as server:
        log(f"ready in {time.perf_counter() - t0:.1f}s; gRPC {server.config.grpc_url}; log {server.log_path}")
        client = grpcclient.InferenceServerClient(server.config.grpc_url)
        emb = cache_client.encode(client, prompts)
        source = nearest_other(emb)
        images, levels, lat = run_variant(client, "k0", prompts, seeds, cfg.batch_size, None, levels=True)
        runs["k0"] = VariantRun("k0", images, lat, [-1] * len(prompts))
        log(f"k0: {len(prompts)} images in {sum(lat):.1f}s")
        level_order = sorted(repo_cfg.step_skip_levels)
        for variant in repo_cfg.variants:
            k = variant_k(variant)
            if variant == "k0":
                continue
            start = levels[source, level_order.index(k)] if k > 0 else None
            images, _, lat = run_variant(client, variant, prompts, seeds, cfg.batch_size, start, levels=False)
            runs[variant] = VariantRun(variant, images, lat, source.tolist() if k > 0 else [-1] * len(prompts))
            log(f"{variant}: {len(prompts)} images in {sum(lat):.1f}s")
        stats = client.get_inference_statistics(as_json=True)["model_stats"]
        orchestrated = run_orchestrated(cfg, server.config.grpc_url, log) if cfg.profile_path.exists() else None
    scorer = QualityScorer()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    summary, records = [], []
    for variant, run in runs.items():
        clip = scorer.clip_score(run.images, prompts)
        gt = scorer.ground_truth(run.images, prompts)
        gt_all = [g["all"] for g in gt if g is not None]
        summary.append(
            {
                "variant": variant,
                "unet_steps": (repo_cfg.fast_num_inference_steps if variant == "fast" else repo_cfg.num_inference_steps - variant_k(variant)),
                "latency_per_image_ms": 1000 * sum(run.latency_s) / len(prompts),
                "clip_score": float(clip.mean()),
                "gt_accuracy": float(np.mean(gt_all)) if gt_all else None,
            }
        )
        for i, p in enumerate(prompts):
            name = f"{i:02d}_{variant}.png"
            Image.fromarray(run.images[i]).save(cfg.out_dir / name)
            records.append({"prompt": p, "kind": kinds[i], "variant": variant, "seed": seeds[i], "source_prompt": prompts[run.source[i]] if run.source[i] >= 0 else None,
                            "clip_score": float(clip[i]), "ground_truth": gt[i], "file": name})
    save_grid(cfg.out_dir / "grid.png", [[runs[v].images[i] for v in runs] for i in range(len(prompts))])
    report = {
        "columns_of_grid": list(runs),
        "rows_of_grid": prompts,
        "trained_weights": (WEIGHTS_DIR / "meta.json").exists(),
        "summary": summary,
        "records": records,
        "triton_model_stats": {s["name"]: {"inference_count": int(s.get("inference_count", 0)), "execution_count": int(s.get("execution_count", 0))} for s in stats},
        "orchestrator": orchestrated,
        "wall_s": time.perf_counter() - t0,
    }
    (cfg.out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def run_demo_report(cfg: DemoConfig, console) -> dict:
    """``argus demo``: run the demo and print its summary table."""
    from rich.table import Table

    report = run_demo(cfg, console=console)
    table = Table(title=f"{len(report['rows_of_grid'])} prompts through Triton (trained weights: {report['trained_weights']})")
    for col in ("variant", "UNet steps", "latency/image (ms)", "CLIP score", "ground-truth acc"):
        table.add_column(col, justify="right")
    for row in report["summary"]:
        gt = "-" if row["gt_accuracy"] is None else f"{row['gt_accuracy']:.2f}"
        table.add_row(row["variant"], str(row["unet_steps"]), f"{row['latency_per_image_ms']:.0f}", f"{row['clip_score']:.1f}", gt)
    console.print(table)
    orch = report.get("orchestrator")
    if orch:
        console.print(f"orchestrator (argus policy, {orch['offered_rps']:.1f} req/s open loop): served {orch['served']}/{orch['requests']}, "
                      f"variant mix {orch['variant_mix']}, SLO violations {orch['slo_violations']:.0f}")
    console.print(f"images: {cfg.out_dir}/grid.png (rows: prompts, columns: {', '.join(report['columns_of_grid'])}); report: {cfg.out_dir}/report.json")
    return report
