"""Training data for the pair quality predictor: (new prompt, cached source prompt, K) triples
scored by ground truth, and (prompt, fast) pairs.

For each world scene, cached sources are made that differ from it in known ways: one kind of
attribute (``gt_eval.DIFFERENCES``; "none" is the same prompt from another seed) or two at once.
Each source is generated at K=0 with its latents kept at every level, and the prompt is resumed
from them at each K, over ``seeds`` seeds; a triple's quality is the seed-averaged ground-truth
attribute accuracy over the prompt's own seed-averaged K=0 accuracy (``relative_quality``), the
same definition as docs/embedded_model.json. So the data says, per prompt, which reuses cost what:
the signal a predictor that sees both prompts can learn and one that sees only the new prompt cannot.

Every prompt carries its template (the caption with attribute words replaced by their kind), so
train and test can be split with no template in both.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from pathlib import Path

import numpy as np

from orchestrator.profile.pairs import PairTable  # the schema belongs to profiling: the pair predictor reads it
from tiny_model.gt_eval import DIFFERENCES, KINDS, LEVELS, _generate, attribute_accuracy, level_latents, perturb
from tiny_model.world import BACKGROUNDS, COLORS, NUMBER_WORDS, POSITION_PHRASE, SHAPES, SIZES, ground_truth_check, sample_scene

_WORDS = {**{c: "{colour}" for c in (*COLORS, *BACKGROUNDS)}, **{s: "{shape}" for s in SHAPES}, **{s + "s": "{shapes}" for s in SHAPES},
          **{s: "{size}" for s in SIZES}, **{w: "{number}" for w in NUMBER_WORDS.values()}}
_PHRASES = re.compile("|".join(re.escape(p) for p in sorted(POSITION_PHRASE.values(), key=len, reverse=True)))


def template_of(caption: str) -> str:
    """The caption's structure: attribute words replaced by their kind ("a {size} {colour} {shape} {position}")."""
    text = _PHRASES.sub("{position}", caption)
    return " ".join(_WORDS.get(w, w) for w in text.split())


@dataclasses.dataclass
class PairDataConfig:
    scenes_per_kind: int = 16
    seeds: int = 4
    first_seed: int = 0
    """Generation seeds are ``first_seed .. first_seed + seeds - 1``: a second table from ``first_seed=4``
    measures the same triples with independent seeds (the labels' test-retest noise)."""
    two_attribute_sources: int = 2
    """Sources per scene that differ in two kinds of attribute at once (beside one per single kind)."""
    batch: int = 64
    seed: int = 77


def cached_sources(scene, rng: random.Random, two: int, unrelated: int = 1):
    """(difference label, source scene) pairs: one per single kind where possible, then ``two`` double
    ones, then ``unrelated`` scenes drawn at random (any kind): the far sources a cache also offers,
    without which a similarity threshold could not be calibrated."""
    out = []
    for d in DIFFERENCES:
        src = perturb(scene, d, rng)
        if src is not None:
            out.append((d, src))
    kinds = [d for d in DIFFERENCES if d != "none"]
    for _ in range(two * 4):
        if len(out) >= len(DIFFERENCES) + two:
            break
        a, b = rng.sample(kinds, 2)
        first = perturb(scene, a, rng)
        second = perturb(first, b, rng) if first is not None else None
        if second is not None and second.caption() not in {s.caption() for _, s in out}:
            out.append(("+".join(sorted((a, b))), second))
    for _ in range(unrelated):
        other = sample_scene(rng)
        if other.caption() != scene.caption():
            out.append(("unrelated", other))
    return out


def build_pairs(cfg: PairDataConfig, pipe=None, log=print) -> PairTable:
    """Generate and score every triple (in-process, the embedded pipeline)."""
    import torch

    from tiny_model.models import FAST_UNET, load_components
    from tiny_model.pipeline import TinyPipeline
    from tiny_model.quality import relative_quality

    t0 = time.perf_counter()
    pipe = pipe or TinyPipeline(load_components())
    rng = random.Random(cfg.seed)
    S, seed_range = cfg.seeds, range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    scenes = [sample_scene(rng, kind) for kind in KINDS for _ in range(cfg.scenes_per_kind)]
    prompts = [s.caption() for s in scenes]
    pairs = [(i, d, src.caption()) for i, s in enumerate(scenes) for d, src in cached_sources(s, rng, cfg.two_attribute_sources)]

    def accuracy(images: np.ndarray, captions: list[str]) -> np.ndarray:
        return np.array([attribute_accuracy(ground_truth_check(im, c)) for im, c in zip(images, captions)])

    rep = [p for p in prompts for _ in range(S)]
    seeds = [1000 * i + s for i in range(len(prompts)) for s in seed_range]
    k0 = accuracy(_generate(pipe, rep, seeds, cfg.batch), rep).reshape(len(prompts), S)
    fast = accuracy(_generate(pipe, rep, seeds, cfg.batch, unet=FAST_UNET.name, num_inference_steps=FAST_UNET.num_inference_steps),
                    rep).reshape(len(prompts), S)
    base = k0.mean(1)
    log(f"k0 and fast: {len(prompts)} prompts x {S} seeds ({time.perf_counter() - t0:.0f} s)")

    src_rep = [c for _, _, c in pairs for _ in range(S)]
    src_seeds = [500_000 + 1000 * j + s for j in range(len(pairs)) for s in seed_range]
    latents = level_latents(pipe, src_rep, src_seeds, cfg.batch)
    tgt_rep = [prompts[i] for i, _, _ in pairs for _ in range(S)]
    tgt_seeds = [1000 * i + s for i, _, _ in pairs for s in seed_range]
    quality = {}
    for k in LEVELS:
        img = _generate(pipe, tgt_rep, tgt_seeds, cfg.batch, k=k, start_latents=latents[k])
        quality[k] = accuracy(img, tgt_rep).reshape(len(pairs), S).mean(1)
        log(f"k{k}: {len(pairs)} sources x {S} seeds ({time.perf_counter() - t0:.0f} s)")

    sources = sorted({c for _, _, c in pairs} - set(prompts))
    all_prompts = prompts + sources
    index = {p: i for i, p in enumerate(all_prompts)}
    emb = torch.nn.functional.normalize(pipe.encode(all_prompts)[1], dim=-1).numpy()
    tgt_idx = np.array([i for i, _, _ in pairs])
    rows = [(i, index[c], k, d, q) for k in LEVELS for (i, d, c), q in zip(pairs, relative_quality(quality[k], base[tgt_idx]))]
    return PairTable(all_prompts, [template_of(p) for p in all_prompts], emb.astype(np.float32),
                     np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), [r[3] for r in rows],
                     np.array([r[4] for r in rows], np.float32), np.arange(len(prompts)), relative_quality(fast.mean(1), base).astype(np.float32),
                     float(k0.std(1).mean()), S)


def write_pairs(cfg: PairDataConfig, out: Path, log=print) -> Path:
    """``argus build-pairs``: build and save the table."""
    table = build_pairs(cfg, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.save(out)
    log(f"{len(table.target)} triples, {len(table.fast_prompt)} fast pairs, {len(set(table.templates))} templates; "
        f"seed noise {table.seed_noise_std:.3f}")
    return out
