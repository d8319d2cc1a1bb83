"""``argus profile``: measure the deployed variants and write the profile the policies read.

Latency is measured on the live path, the two calls the front door makes: the generation call
(``gen_<variant>`` on the probe's embeddings, a K>0 variant from a cached entry fetched inside
Triton) per variant and batch size (a batch of b prompts in one request is what a worker runs),
and the front door's per-request cost on top (``FrontDoorCost``): the probe call, the front
door's own work measured through a real front door, and how much slower two variants' batches
run when they share one worker's cores. Quality per prompt and variant is measured with the
quality scorer on a training set of prompts, each K variant starting from the latent of the most
similar *other* prompt of a pool, exactly as the cache serves it (see tiny_model.evaluate).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np

from orchestrator.profile.schema import FrontDoorCost, Profile, QualityTable, VariantProfile
from orchestrator.triton.repository import RepositoryConfig, generation_name, variant_k

PROFILE_PROMPT = "a large red circle on the left and a small blue square on the right"
PROFILE_TENANT = "argus-profile"
"""The profile's latents go to a tenant of their own, never into the one that serves users."""
MIXED_PAIRS = (("k0", "fast"), ("k0", "k25"), ("k10", "k25"))
"""Variant pairs run at once on one worker for the mixed-variant slowdown (the mixes policies serve)."""


@dataclasses.dataclass
class LivePath:
    """The worker under measurement, reached as the front door reaches it, with the profile prompt's
    probe once its own step latents are cached (so every K variant runs from a real entry)."""

    workers: object
    """``orchestrator.serve.workers.TritonWorkers`` on the one worker."""
    url: str
    probe: object
    levels: list[int]

    @classmethod
    def connect(cls, url: str, levels: list[int], timeout_s: float = 120.0) -> LivePath:
        from orchestrator.serve.workers import TritonWorkers

        workers = TritonWorkers([url], timeout_s)
        probe = workers.probe(PROFILE_PROMPT, PROFILE_TENANT)
        if (probe.entry_ids < 0).any():
            workers.generate(url, "k0", probe, 0, None, PROFILE_TENANT)  # inserts its step latents off the response path
            deadline = time.time() + 30
            while (probe.entry_ids < 0).any() and time.time() < deadline:
                time.sleep(0.2)
                probe = workers.probe(PROFILE_PROMPT, PROFILE_TENANT)
        if (probe.entry_ids < 0).any():
            raise RuntimeError(f"the cache at {url} holds no latent of the profile prompt after a k0 generation")
        return cls(workers, url, probe, levels)

    def generate(self, variant: str, batch: int) -> None:
        """One generation call of ``batch`` rows; raises if a K variant did not run from its entry."""
        from orchestrator.serve.workers import generation_inputs

        k = variant_k(variant)
        entry = int(self.probe.entry_ids[self.levels.index(k)]) if k > 0 else None
        inputs = generation_inputs(variant, self.probe, list(range(batch)), entry, PROFILE_TENANT)
        res = self.workers.client(self.url).infer(generation_name(variant), inputs, client_timeout=self.workers.timeout_s)
        if (res.as_numpy("K_USED") != k).any():
            raise RuntimeError(f"{variant} ran as K={res.as_numpy('K_USED').ravel().tolist()}, not from its cached entry")

    def timed_s(self, variant: str, batch: int) -> float:
        t = time.perf_counter()
        self.generate(variant, batch)
        return time.perf_counter() - t


def measure_latency(path: LivePath, variants: list[str], batches=(1, 2, 4, 8), repeats: int = 5) -> dict[str, dict[int, float]]:
    """Median ms of the generation call per variant and batch size (after a warm-up call)."""
    out: dict[str, dict[int, float]] = {}
    for v in variants:
        out[v] = {}
        for b in batches:
            path.generate(v, b)  # warm-up
            out[v][b] = 1000 * float(np.median([path.timed_s(v, b) for _ in range(repeats)]))
    return out


SPEED_VARIANTS = ("k0", "k25", "fast")
"""What a speed check times: the slowest, a cached and the fast variant (each a different mix of UNet and decoder work)."""


def measure_speed(path: LivePath, profile: Profile, variants=SPEED_VARIANTS, repeats: int = 3) -> float:
    """How many times slower the worker is now than when ``profile`` was measured: the median over
    ``variants`` of (median batch-of-one ms now / the profile's). A few seconds, so a replay can be
    bracketed by one before and one after (``argus bench live``)."""
    now = measure_latency(path, [v for v in variants if v in profile.variants], (1,), repeats)
    ratios = [ms[1] / profile.variants[v].latency_ms[1] for v, ms in now.items()]
    return float(np.median(ratios)) if ratios else 1.0


def measure_probe_ms(path: LivePath, repeats: int = 10) -> float:
    """Median ms of the probe call for one prompt."""
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        path.workers.probe(f"{PROFILE_PROMPT} {i}", PROFILE_TENANT)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times[1:]))


def measure_mixed_slowdown(path: LivePath, latency: dict[str, dict[int, float]], repeats: int = 3) -> float:
    """Mean over ``MIXED_PAIRS`` of (wall time of both batches of one started together) / (sum of
    their times alone): above 1, variants sharing a worker cost more than running in turn."""
    ratios = []
    for a, b in MIXED_PAIRS:
        if a not in latency or b not in latency:
            continue
        for _ in range(repeats):
            start = threading.Barrier(2)

            def run(v: str) -> None:
                start.wait()
                path.generate(v, 1)

            threads = [threading.Thread(target=run, args=(v,)) for v in (a, b)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            ratios.append(1000 * (time.perf_counter() - t) / (latency[a][1] + latency[b][1]))
    return float(np.mean(ratios)) if ratios else 1.0


def measure_frontdoor_overhead_ms(url: str, profile_path: Path, probe_ms: float, requests: int = 12, port: int = 18741) -> float:
    """The front door's own per-request latency beyond probe and generation: a real front door
    (clipper-ha, one client, new prompts) reports each answer's generation time; the rest of the
    client's latency, less the probe, is the overhead (median)."""
    import tritonclient.grpc as grpcclient

    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.frontdoor import serve
    from orchestrator.triton.client import infer_input

    server, engine = serve(FrontDoorConfig.for_measurement(url, profile_path, "clipper-ha", port, default_slo_ms=60_000.0))
    rest = []
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        for i in range(requests + 1):
            inputs = [infer_input("PROMPT", np.array([f"{PROFILE_PROMPT} {i}".encode()], dtype=np.object_), "BYTES"),
                      infer_input("SEED", np.array([i], dtype=np.int64), "INT64")]
            t = time.perf_counter()
            res = client.infer("t2i", inputs)
            rest.append(1000 * (time.perf_counter() - t) - float(res.get_response().parameters["generation_ms"].string_param))
        client.close()
    finally:
        server.stop(0)
        engine.close()
    return max(0.0, float(np.median(rest[1:])) - probe_ms)


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


def build_profile(path: LivePath, repo: RepositoryConfig, quality: QualityTable, fast_load_time_s: float, batches=(1, 2, 4, 8),
                  repeats: int = 3) -> Profile:
    """Latencies and the front door's probe and mixed-variant costs on the live path (the front door's
    own overhead needs a profile to serve from: ``run_profile`` measures it last)."""
    latency = measure_latency(path, repo.variants, batches, repeats)
    variants = {
        v: VariantProfile(v, variant_k(v), generation_name(v), latency[v], load_time_s=fast_load_time_s if v == "fast" else 0.0,
                          needs_cache=variant_k(v) > 0)
        for v in repo.variants
    }
    thresholds = {k: t for k, t in repo.cache_thresholds if k in repo.step_skip_levels}
    cost = FrontDoorCost(probe_ms=measure_probe_ms(path), mixed_slowdown=measure_mixed_slowdown(path, latency, repeats))
    return Profile(variants, quality, thresholds, source=f"measured by `argus profile` on {time.strftime('%Y-%m-%d')} (CPU, tiny embedded model)",
                   frontdoor=cost)


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


def run_profile(url: str, out: Path, prompts: int, pool: int, repeats: int, batches: tuple[int, ...], latency_only: bool, console=None,
                quality_from: Path | None = None) -> Profile:
    """``argus profile``: measure against a worker with every variant loaded, write ``out``, print the table.
    ``latency_only`` keeps the quality table of ``quality_from`` (default: ``out`` itself)."""
    import tritonclient.grpc as grpcclient
    from rich.table import Table

    client = grpcclient.InferenceServerClient(url)
    quality = Profile.load(quality_from or out).quality if latency_only else measure_quality(prompts, pool)
    load_s = measure_fast_load_s(client)
    repo = RepositoryConfig()
    prof = build_profile(LivePath.connect(url, repo.cached_levels), repo, quality, load_s, batches, repeats)
    keep = quality_from or out
    if Path(keep).exists():  # the ground-truth table is build-pairs' (regenerated with the weights), not this command's
        prof.ground_truth = Profile.load(keep).ground_truth
    out.parent.mkdir(parents=True, exist_ok=True)
    prof.save(out)
    prof.frontdoor.overhead_ms = measure_frontdoor_overhead_ms(url, out, prof.frontdoor.probe_ms)
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
        fd = prof.frontdoor
        console.print(f"front door per request: probe {fd.probe_ms:.1f} ms + overhead {fd.overhead_ms:.1f} ms; "
                      f"two variants at once on one worker: {fd.mixed_slowdown:.2f}x the sum of their times alone")
    return prof
