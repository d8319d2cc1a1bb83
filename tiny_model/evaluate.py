"""Measure the embedded model: full quality, the cost of approximation per prompt, latency.

``argus eval-embedded`` runs this and writes docs/embedded_model.md, a JSON of every number and
a sample grid. All generation here is in-process with the exact code the Triton models run
(``tiny_model.pipeline``); the served path is checked against it by the serving tests.

Approximate caching is measured as the system uses it: every prompt of a pool is generated at
full quality while its latents at every step-skip level are kept; then each prompt is generated
again from the latent at step K of the most similar *other* prompt of the pool (by pooled text
embedding, the cache's key), for each K. Relative quality is q(K)/q(0) per prompt, so its spread
across prompts is the prompt dependence the orchestrator exploits.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from orchestrator.paths import DOCS_DIR
from tiny_model.models import FAST_UNET, load_components
from tiny_model.pipeline import TinyPipeline
from tiny_model.quality import QualityScorer, relative_quality
from tiny_model.world import render, sample_scene

LEVELS = (5, 10, 15, 20, 25)


@dataclasses.dataclass
class EvalConfig:
    num_per_kind: int = 48
    """Prompts per difficulty class (simple: 1 object; hard: 3 objects with relations)."""
    pool_size: int = 240
    """Prompts whose generations fill the simulated cache (the 'other' prompts)."""
    distractors: int = 10
    seed: int = 1234
    batch: int = 16
    neighbour_ranks: tuple[int, ...] = (0, 4, 24)
    """Which neighbours (by similarity rank among other prompts) to start from; rank 0 is what the
    cache serves, the others span lower similarities for the threshold calibration."""
    calibration_target: float = 0.95
    """Thresholds: lowest similarity at which reused latents keep this mean relative CLIP score."""
    out_dir: Path = DOCS_DIR


@dataclasses.dataclass
class Generated:
    prompts: list[str]
    kinds: list[str]
    images: dict[str, np.ndarray]  # variant -> (N, H, W, 3); "k{K}@{rank}" for other neighbour ranks
    neighbour_sim: dict[int, np.ndarray]  # rank -> (N,) similarity to the prompt whose latents were reused


def _scenes(rng: random.Random, n: int, kind: str):
    return [sample_scene(rng, kind) for _ in range(n)]


def generate_all(pipe: TinyPipeline, cfg: EvalConfig) -> Generated:
    rng = random.Random(cfg.seed)
    scenes = _scenes(rng, cfg.num_per_kind, "simple") + _scenes(rng, cfg.num_per_kind, "hard")
    prompts = [s.caption() for s in scenes]
    kinds = ["simple"] * cfg.num_per_kind + ["hard"] * cfg.num_per_kind
    pool = [sample_scene(rng).caption() for _ in range(cfg.pool_size)]
    seeds = list(range(len(prompts)))

    # Cache fill: the pool's latents at every level.
    pool_latents = {k: [] for k in LEVELS}
    for i in range(0, len(pool), cfg.batch):
        saved = {}
        pipe.generate(pool[i : i + cfg.batch], list(range(10_000 + i, 10_000 + i + len(pool[i : i + cfg.batch]))),
                      on_step=lambda step, lat: saved.__setitem__(step, lat.clone()) if step in LEVELS else None)
        for k in LEVELS:
            pool_latents[k].append(saved[k])
    pool_latents = {k: torch.cat(v) for k, v in pool_latents.items()}

    def unit(x):
        return torch.nn.functional.normalize(x, dim=-1)

    emb_p, emb_pool = unit(pipe.encode(prompts)[1]), unit(pipe.encode(pool)[1])
    sim = emb_p @ emb_pool.T
    sim[torch.tensor([[p == q for q in pool] for p in prompts])] = -2.0  # only *other* prompts
    ranked_sim, ranked = sim.sort(1, descending=True)

    images: dict[str, list[np.ndarray]] = {v: [] for v in ["k0", *[f"k{k}" for k in LEVELS], "fast"]}
    images["rendered"] = [np.stack([np.asarray(render(s)) for s in scenes])]  # the ground-truth reference
    for i in range(0, len(prompts), cfg.batch):
        chunk, s = prompts[i : i + cfg.batch], seeds[i : i + cfg.batch]
        images["k0"].append(pipe.generate(chunk, s))
        for k in LEVELS:
            for r in cfg.neighbour_ranks:
                name = f"k{k}" if r == 0 else f"k{k}@{r}"
                src = ranked[i : i + cfg.batch, r]
                images.setdefault(name, []).append(pipe.generate(chunk, s, k=k, start_latents=pool_latents[k][src]))
        images["fast"].append(pipe.generate(chunk, s, unet=FAST_UNET.name, num_inference_steps=FAST_UNET.num_inference_steps))
    sims = {r: ranked_sim[:, r].numpy() for r in cfg.neighbour_ranks}
    return Generated(prompts, kinds, {v: np.concatenate(x) for v, x in images.items()}, sims)


def score(gen: Generated, scorer: QualityScorer, cfg: EvalConfig) -> dict:
    rng = random.Random(cfg.seed + 1)
    by_kind = {k: [i for i, kk in enumerate(gen.kinds) if kk == k] for k in ("simple", "hard")}
    distractors = []
    for i, p in enumerate(gen.prompts):
        same = [gen.prompts[j] for j in by_kind[gen.kinds[i]] if gen.prompts[j] != p]
        distractors.append(rng.sample(same, cfg.distractors))
    clip = {v: scorer.clip_score(im, gen.prompts) for v, im in gen.images.items()}
    headline = [v for v in gen.images if "@" not in v]
    checks = {v: scorer.ground_truth(gen.images[v], gen.prompts) for v in headline}
    gt = {v: np.array([g["all"] for g in c]) for v, c in checks.items()}
    gt_attr = {v: np.array([np.mean([x for key, x in g.items() if key != "all"]) for g in c]) for v, c in checks.items()}
    top1 = {v: scorer.retrieval_top1(gen.images[v], gen.prompts, distractors) for v in headline}
    out: dict = {"variants": {}}
    for v in headline:
        row = {}
        for kind, idx in by_kind.items():
            row[kind] = {
                "clip_score": float(clip[v][idx].mean()),
                "top1_of_11": float(top1[v][idx].mean()),
                "gt_all": float(gt[v][idx].mean()),
                "gt_attribute_acc": float(gt_attr[v][idx].mean()),
            }
        out["variants"][v] = row
    # Relative quality per prompt: CLIP score ratio to the same prompt's K=0 image.
    rel = {v: relative_quality(clip[v], clip["k0"]) for v in gen.images if v not in ("k0", "rendered")}
    out["relative_quality"] = {}
    out["thresholds"] = calibrate(rel, gen.neighbour_sim, cfg.calibration_target)
    sims = gen.neighbour_sim[0]
    bins = [(-1.0, 0.8), (0.8, 0.9), (0.9, 0.95), (0.95, 1.01)]
    for v, r in rel.items():
        if "@" in v:
            continue
        entry = {kind: {"mean": float(r[idx].mean()), "p10": float(np.percentile(r[idx], 10)), "p90": float(np.percentile(r[idx], 90)),
                        "std": float(r[idx].std())} for kind, idx in by_kind.items()}
        entry["all"] = {"mean": float(r.mean()), "p10": float(np.percentile(r, 10)), "p90": float(np.percentile(r, 90)), "std": float(r.std())}
        entry["by_similarity"] = {}
        for kind, idx in [("all", np.arange(len(r)))] + list(by_kind.items()):
            rs, ss = r[idx], sims[idx]
            entry["by_similarity"][kind] = {f"[{lo:.2f},{min(hi, 1.0):.2f})": (float(rs[(ss >= lo) & (ss < hi)].mean()) if ((ss >= lo) & (ss < hi)).any() else None,
                                                                            int(((ss >= lo) & (ss < hi)).sum())) for lo, hi in bins}
        out["relative_quality"][v] = entry
    out["neighbour_similarity"] = {r: {"mean": float(x.mean()), "p10": float(np.percentile(x, 10)), "p90": float(np.percentile(x, 90))}
                                   for r, x in gen.neighbour_sim.items()}
    return out


def calibrate(rel: dict[str, np.ndarray], sims: dict[int, np.ndarray], target: float) -> dict[int, dict]:
    """Per K: the lowest similarity s such that reuse from neighbours with similarity >= s keeps
    mean relative quality >= target (pairs from every neighbour rank, so s spans the range)."""
    out = {}
    for k in LEVELS:
        pairs = []
        for r, sim in sims.items():
            name = f"k{k}" if r == 0 else f"k{k}@{r}"
            pairs += list(zip(sim.tolist(), rel[name].tolist()))
        pairs.sort(reverse=True)
        s_arr = np.array([p[0] for p in pairs])
        q_arr = np.array([p[1] for p in pairs])
        running = np.cumsum(q_arr) / np.arange(1, len(q_arr) + 1)
        ok = np.nonzero(running >= target)[0]
        # The longest prefix (most permissive threshold) whose mean still meets the target.
        threshold = float(s_arr[ok.max()]) if len(ok) else None
        slope = float(np.polyfit(s_arr, q_arr, 1)[0]) if len(pairs) > 2 else None
        out[k] = {"threshold": threshold, "pairs": len(pairs), "quality_vs_similarity_slope": slope,
                  "coverage": float((s_arr >= threshold).mean()) if threshold is not None else 0.0}
    return out


def latency(pipe: TinyPipeline, repeats: int = 5) -> dict:
    """Seconds per image for each variant at batch 1 and 8 (median of repeats), one torch thread."""
    out = {}
    start8 = torch.randn(8, 4, 8, 8)
    for bs in (1, 8):
        prompts, seeds = ["a large red circle on the left"] * bs, list(range(bs))
        for v in ["k0", *[f"k{k}" for k in LEVELS], "fast"]:
            kw = ({"unet": FAST_UNET.name, "num_inference_steps": FAST_UNET.num_inference_steps} if v == "fast"
                  else {"k": int(v[1:]), "start_latents": start8[:bs] if v != "k0" else None})
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                pipe.generate(prompts, seeds, **kw)
                times.append(time.perf_counter() - t)
            out[f"{v}_b{bs}"] = 1000 * float(np.median(times)) / bs
    return out


def grid(gen: Generated, path: Path, rows: int = 8, scale: int = 3) -> None:
    from PIL import Image

    variants = list(gen.images)
    n = len(gen.prompts)
    picks = list(range(0, rows // 2)) + list(range(n // 2, n // 2 + rows // 2))
    h = w = gen.images["k0"].shape[1] * scale
    out = Image.new("RGB", (w * len(variants), h * len(picks)), "white")
    for r, i in enumerate(picks):
        for c, v in enumerate(variants):
            out.paste(Image.fromarray(gen.images[v][i]).resize((w, h), Image.Resampling.NEAREST), (c * w, r * h))
    out.save(path)


def run_eval(cfg: EvalConfig) -> dict:
    torch.set_num_threads(2)
    comps = load_components()
    pipe = TinyPipeline(comps)
    t = time.perf_counter()
    gen = generate_all(pipe, cfg)
    results = score(gen, QualityScorer(), cfg)
    torch.set_num_threads(1)
    results["latency_ms_per_image"] = latency(pipe)
    results["wall_s"] = time.perf_counter() - t
    results["config"] = {k: str(v) for k, v in dataclasses.asdict(cfg).items()}
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    grid(gen, cfg.out_dir / "embedded_grid.png")
    (cfg.out_dir / "embedded_eval.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def render_markdown(r: dict, meta: dict) -> str:
    """docs/embedded_model.md from the evaluation results (numbers only come from ``r``)."""
    v = r["variants"]
    lines = ["## Full quality and every approximation (in-process, same code as the Triton models)", "",
             "| variant | kind | CLIP score | top-1 of 11 (CLIP retrieval) | ground truth: all correct | ground truth: attribute acc |",
             "|---|---|---|---|---|---|"]
    for name, row in v.items():
        for kind in ("simple", "hard"):
            x = row[kind]
            lines.append(f"| {name} | {kind} | {x['clip_score']:.1f} | {x['top1_of_11']:.2f} | {x['gt_all']:.2f} | {x['gt_attribute_acc']:.2f} |")
    lines += ["", "Chance for top-1 of 11 is 0.09. `rendered` is the world's own renderer (the upper bound); `kK` starts from the latent at",
              "step K of the most similar *other* prompt in a pool of earlier generations; `fast` is the smaller UNet with 20 steps.", "",
              "## Relative quality q(K)/q(0) per prompt (CLIP score ratio), simple vs hard", "",
              "The full-quality score in the denominator is floored at a quarter of the mean full-quality score, and the ratio capped",
              "at 1.5 (`tiny_model.quality.relative_quality`): a ratio to a near-zero score, a prompt the model fails anyway, means nothing.", "",
              "| variant | simple mean | simple p10-p90 | hard mean | hard p10-p90 | all: std across prompts |", "|---|---|---|---|---|---|"]
    for name, e in r["relative_quality"].items():
        s, h, a = e["simple"], e["hard"], e["all"]
        lines.append(f"| {name} | {s['mean']:.3f} | {s['p10']:.2f}-{s['p90']:.2f} | {h['mean']:.3f} | {h['p10']:.2f}-{h['p90']:.2f} | {a['std']:.3f} |")
    bins = list(next(iter(r["relative_quality"].values()))["by_similarity"]["all"])
    lines += ["", "## Relative quality by similarity of the reused prompt (mean, n)", "", "| variant | kind | " + " | ".join(bins) + " |",
              "|---|---|" + "---|" * len(bins)]
    for name, e in r["relative_quality"].items():
        if name == "fast":
            continue
        for kind, cellsd in e["by_similarity"].items():
            cells = [("-" if m is None else f"{m:.3f}") + f" (n={n})" for m, n in cellsd.values()]
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    lines += ["", "## Calibrated cache thresholds", "",
              f"Lowest similarity at which reusing a latent keeps mean relative quality >= {r['config']['calibration_target']}",
              "(pairs from neighbour ranks " + r["config"]["neighbour_ranks"] + "):", "",
              "| K | threshold | coverage of pairs | slope dq/dsim | pairs |", "|---|---|---|---|---|"]
    for k, t in r["thresholds"].items():
        thr = "none reaches the target" if t["threshold"] is None else f"{t['threshold']:.3f}"
        slope = "-" if t["quality_vs_similarity_slope"] is None else f"{t['quality_vs_similarity_slope']:.3f}"
        lines.append(f"| {k} | {thr} | {t['coverage']:.2f} | {slope} | {t['pairs']} |")
    lat = r["latency_ms_per_image"]
    names = ["k0", *[f"k{k}" for k in LEVELS], "fast"]
    lines += ["", "## Latency per image on CPU (in-process, 1 torch thread, median of 5)", "", "| batch | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for bs in (1, 8):
        lines.append(f"| {bs} | " + " | ".join(f"{lat[f'{n}_b{bs}']:.0f} ms" for n in names) + " |")
    wall = meta.get("wall_s", {})
    lines += ["", "## Training", "", f"`argus train-embedded` (seed {meta.get('seed')}, {meta.get('torch_threads')} torch threads): "
              + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()) + ".", "",
              "Final losses: " + ", ".join(f"{k} {v:.4f}" for k, v in meta.get("final_loss", {}).items()) + "."]
    return "\n".join(lines) + "\n"


def eval_command(out_dir: Path, ground_truth_only: bool, prompts_per_kind: int, seeds: int) -> list[Path]:
    """``argus eval-embedded``: the seed-averaged ground-truth evaluation (docs/embedded_model.json) and,
    unless ``ground_truth_only``, the CLIP-score report (docs/embedded_model.md, grid, embedded_eval.json)."""
    from tiny_model.gt_eval import GTEvalConfig, write_gt_report

    torch.set_num_threads(2)
    paths = [write_gt_report(GTEvalConfig(prompts_per_kind=prompts_per_kind, seeds=seeds, out_dir=out_dir))]
    paths.append(write_report(out_dir, clip_report=not ground_truth_only))
    return paths


def write_report(out_dir: Path, clip_report: bool = True) -> Path:
    """``embedded_model.md``: its hand-written head, the training stages (weights/stages.json), the
    ground-truth tables (``embedded_model.gt.md``) and, with ``clip_report``, the CLIP-score report (measured now)."""
    from tiny_model.models import WEIGHTS_DIR
    from tiny_model.stages import STAGES_FILE, stages_markdown

    meta = json.loads((WEIGHTS_DIR / "meta.json").read_text())
    head = out_dir / "embedded_model.head.md"
    parts = [head.read_text()] if head.exists() else []
    if (WEIGHTS_DIR / STAGES_FILE).exists():
        parts.append("\n## Training stages (`tiny_model/weights/stages.json`; `argus train-embedded` replays them from the seed)\n\n"
                     "Ground truth per kind (simple/medium/hard/counting, % fully correct) before and after each stage, by its gate "
                     "(`tiny_model.stages.GateConfig`: 200 rendered scenes per kind for the round trip, 24 prompts x 2 seeds per kind "
                     "for k0 and fast):\n\n" + stages_markdown(json.loads((WEIGHTS_DIR / STAGES_FILE).read_text())))
    if (out_dir / "embedded_model.gt.md").exists():
        parts.append("\n" + (out_dir / "embedded_model.gt.md").read_text())
    if clip_report:
        parts.append(render_markdown(run_eval(EvalConfig(out_dir=out_dir)), meta))
    path = out_dir / "embedded_model.md"
    path.write_text("".join(parts))
    return path
