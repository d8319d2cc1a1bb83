"""``argus profile``: measure the deployed variants and write the profile the policies read.

Latency per variant and batch size is measured through Triton over gRPC (concurrent requests of
one prompt each would add queueing; a batch of b prompts in one request is what a worker runs).
Quality per prompt and variant is measured with the quality scorer on a training set of prompts,
each K variant starting from the latent of the most similar *other* prompt of a pool, exactly as
the cache serves it (see tiny_model.evaluate).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from orchestrator.profile.schema import Profile, QualityTable, VariantProfile
from orchestrator.triton.client import generate
from orchestrator.triton.repository import RepositoryConfig, ensemble_name, variant_k


def measure_latency(client, variants: list[str], batches=(1, 2, 4, 8), repeats: int = 3) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    prompt = "a large red circle on the left and a small blue square on the right"
    for v in variants:
        out[v] = {}
        for b in batches:
            start = np.zeros((b, 4, 8, 8), np.float32) if variant_k(v) > 0 else None
            generate(client, [prompt] * b, list(range(b)), v, start)  # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                generate(client, [prompt] * b, list(range(b)), v, start)
                times.append(time.perf_counter() - t)
            out[v][b] = 1000 * float(np.median(times))
    return out


def measure_quality(num_prompts: int = 96, pool_size: int = 240, seed: int = 4321) -> QualityTable:
    import torch

    from tiny_model.evaluate import EvalConfig, generate_all
    from tiny_model.models import load_components
    from tiny_model.pipeline import TinyPipeline
    from tiny_model.quality import QualityScorer, relative_quality

    torch.set_num_threads(2)
    pipe = TinyPipeline(load_components())
    cfg = EvalConfig(num_per_kind=num_prompts // 2, pool_size=pool_size, seed=seed, neighbour_ranks=(0,))
    gen = generate_all(pipe, cfg)
    scorer = QualityScorer()
    clip = {v: scorer.clip_score(im, gen.prompts) for v, im in gen.images.items() if v != "rendered"}
    emb = torch.nn.functional.normalize(pipe.encode(gen.prompts)[1], dim=-1).numpy()
    rel = {v: relative_quality(c, clip["k0"]).astype(np.float32) for v, c in clip.items() if v != "k0"}
    sim = {v: gen.neighbour_sim[0].astype(np.float32) for v in rel if v != "fast"}
    return QualityTable(gen.prompts, emb.astype(np.float32), rel, sim)


def build_profile(client, repo: RepositoryConfig, quality: QualityTable, fast_load_time_s: float, batches=(1, 2, 4, 8), repeats: int = 3) -> Profile:
    latency = measure_latency(client, repo.variants, batches, repeats)
    variants = {
        v: VariantProfile(v, variant_k(v), ensemble_name(v), latency[v], load_time_s=fast_load_time_s if v == "fast" else 0.0, needs_cache=variant_k(v) > 0)
        for v in repo.variants
    }
    thresholds = {k: t for k, t in repo.cache_thresholds if k in repo.step_skip_levels}
    return Profile(variants, quality, thresholds, source=f"measured by `argus profile` on {time.strftime('%Y-%m-%d')} (CPU, tiny embedded model)")


def measure_fast_load_s(client) -> float:
    """Time to bring the fast model up on a worker (unload, then load unet_fast and t2i_fast)."""
    client.unload_model("t2i_fast", unload_dependents=True)
    client.unload_model("unet_fast")
    deadline = time.time() + 60
    while (client.is_model_ready("unet_fast") or client.is_model_ready("denoiser_fast")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # unloads finish in the background (the recipe's section 5)
    t = time.perf_counter()
    client.load_model("unet_fast")
    client.load_model("t2i_fast")
    return time.perf_counter() - t


def run_profile(url: str, out: Path, prompts: int, pool: int, repeats: int, batches: tuple[int, ...], latency_only: bool, console=None) -> Profile:
    """``argus profile``: measure against a worker with every variant loaded, write ``out``, print the table."""
    import tritonclient.grpc as grpcclient
    from rich.table import Table

    client = grpcclient.InferenceServerClient(url)
    quality = Profile.load(out).quality if latency_only else measure_quality(prompts, pool)
    load_s = measure_fast_load_s(client)
    prof = build_profile(client, RepositoryConfig(), quality, load_s, batches, repeats)
    out.parent.mkdir(parents=True, exist_ok=True)
    prof.save(out)
    if console:
        table = Table(title=f"profile -> {out}")
        for col in ("variant", *[f"b={b} ms" for b in batches], "mean rel. quality"):
            table.add_column(col, justify="right")
        for v, vp in prof.variants.items():
            q = 1.0 if v == "k0" else float(quality.relative_quality[v].mean())
            table.add_row(v, *[f"{vp.latency_ms[b]:.0f}" for b in batches], f"{q:.3f}")
        console.print(table)
        console.print(f"fast model load time: {load_s:.1f} s")
    return prof
