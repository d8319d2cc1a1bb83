"""The embedded model: weights load, training reproduces from a seed (smoke), the scorer means something."""

from __future__ import annotations

import random

import numpy as np
import torch

from tiny_model.models import TOKEN_LEN, WEIGHTS_DIR, load_components, load_tokenizer
from tiny_model.pipeline import TinyPipeline
from tiny_model.train import TrainConfig, train_embedded
from tiny_model.world import render, sample_scene


def test_shipped_weights_load():
    comps = load_components()
    assert comps.trained, f"no trained weights in {WEIGHTS_DIR}"
    assert comps.vae_scaling_factor > 0
    assert set(comps.unets) == {"unet", "unet_fast"}


def test_tokenizer_takes_any_prompt():
    tok = load_tokenizer()
    ids = tok(["a red circle", "An astronaut riding a horse, trending on artstation, 8k", "x" * 5000, "ünïcödé ✨"])
    assert ids.shape == (4, TOKEN_LEN)
    assert (ids[:, 0] == 1).all() and (ids == 2).any(axis=1).all()  # <bos> ... <eos> even when truncated


def test_smoke_training_is_reproducible_and_loadable(tmp_path):
    metas = [train_embedded(TrainConfig.smoke(tmp_path / name)) for name in ("a", "b")]
    assert metas[0]["final_loss"] == metas[1]["final_loss"]
    comps = load_components(tmp_path / "a")
    assert comps.trained
    images = TinyPipeline(comps).generate(["a red circle"], [0], num_inference_steps=3)
    assert images.shape == (1, 32, 32, 3) and images.dtype == np.uint8


def test_random_fallback_is_deterministic(tmp_path):
    a, b = load_components(tmp_path / "none"), load_components(tmp_path / "none")
    assert not a.trained
    for x, y in zip(a.unets["unet"].parameters(), b.unets["unet"].parameters()):
        assert torch.equal(x, y)


def test_quality_scorer_prefers_the_true_caption():
    from tiny_model.quality import QualityScorer

    scorer = QualityScorer()
    rng = random.Random(11)
    scenes = [sample_scene(rng, kind) for kind in ("simple", "medium", "hard") for _ in range(20)]
    images = np.stack([np.asarray(render(s)) for s in scenes])
    true = scorer.clip_score(images, [s.caption() for s in scenes])
    wrong = scorer.clip_score(images, [scenes[(i + 1) % len(scenes)].caption() for i in range(len(scenes))])
    assert (true > wrong).mean() > 0.9
