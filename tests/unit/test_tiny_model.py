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
    assert (ids[:, 0] == 1).all() and (ids == tok.eos_id).any(axis=1).all()  # <bos> ... <eos> even when truncated


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


def save_clip_dir(path):
    """A tiny random transformers CLIPModel saved as a real deployment's scorer directory would be."""
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    from tiny_model.models import clip_config, load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    CLIPModel(clip_config(tok.vocab_size)).save_pretrained(path)
    PreTrainedTokenizerFast(tokenizer_object=tok._tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                            unk_token="<unk>").save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)


def test_a_transformers_clip_directory_scores_like_the_embedded_scorer(tmp_path):
    """Any CLIPModel saved with save_pretrained (model, tokenizer, image processor) loads as the
    scorer; a directory without a model config is refused with the reason."""
    import numpy as np
    import pytest
    import torch

    from tiny_model.quality import PretrainedClipScorer, load_scorer

    save_clip_dir(tmp_path)
    scorer = load_scorer(tmp_path)
    assert isinstance(scorer, PretrainedClipScorer)
    imgs = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    prompts = ["a red circle", "a blue square on the left", "two green triangles"]
    scores = scorer.clip_score(imgs, prompts)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 100))
    img, txt = scorer.image_features(imgs), scorer.text_features(prompts)
    expected = (100 * (img * txt).sum(-1).clamp(min=0)).numpy()
    assert np.allclose(scores, expected, atol=1e-4)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="config.json"):
        load_scorer(tmp_path / "nothing-here")


def test_the_front_doors_sampler_scores_with_a_clip_directory_and_survives_a_bad_one(tmp_path):
    import numpy as np

    from orchestrator.serve.metrics import Metrics
    from orchestrator.serve.scoring import QualitySampler

    save_clip_dir(tmp_path)
    img = np.zeros((1, 32, 32, 3), np.uint8)
    good = QualitySampler(Metrics(), scorer_dir=tmp_path)
    good.submit(img, "a red circle", "k0")
    assert good.flush(60) and good.scored == 1
    good.close()
    bad = QualitySampler(Metrics(), scorer_dir=tmp_path / "missing")
    bad._thread.join(30)
    assert not bad._thread.is_alive() and bad.scored == 0  # scoring off, logged; submit still never blocks
    bad.submit(img, "a red circle", "k0")


def test_token_len_covers_the_longest_caption_of_the_grammar():
    """No caption is cut: <bos> + every token + <eos> fits TOKEN_LEN, over a large sample of every kind."""
    tok = load_tokenizer()
    rng = random.Random(3)
    longest = max(tok.count(sample_scene(rng, kind).caption()) for kind in ("simple", "medium", "hard", "counting") for _ in range(1500))
    assert longest <= TOKEN_LEN == tok.token_len, (longest, TOKEN_LEN)
    ids = tok(["a large purple triangle at the bottom and a large yellow square on the right and a large orange circle on the left on a white background"])
    assert (ids[0] == tok.eos_id).sum() == 1 and ids[0, -1] == 0  # <eos> present, room to spare


class _Latents:
    def __init__(self, x):
        self.mean = x


class _Out:
    def __init__(self, x):
        self.latent_dist, self.sample = _Latents(x), x


class _FakeVAE:
    """encode/decode as identities (a perfect round trip), or decode to gray (a broken decoder)."""

    def __init__(self, broken: bool):
        self.broken = broken

    def encode(self, x):
        return _Out(x)

    def decode(self, z):
        return _Out(torch.zeros_like(z) if self.broken else z)


def test_vae_roundtrip_measures_the_decoder():
    from types import SimpleNamespace

    from tiny_model.gt_eval import vae_roundtrip

    perfect = vae_roundtrip(SimpleNamespace(vae=_FakeVAE(False)), scenes_per_kind=40)
    broken = vae_roundtrip(SimpleNamespace(vae=_FakeVAE(True)), scenes_per_kind=40)
    assert set(perfect) == {"simple", "medium", "hard", "counting"}
    assert all(v["gt_all_correct"] >= 0.98 for v in perfect.values()), perfect
    assert all(v["gt_all_correct"] == 0.0 for v in broken.values()), broken


def test_shipped_weights_are_small_and_load_without_training():
    """Under 100 MB in the repository, loaded from safetensors in one pass (no optimiser, no training state)."""
    import json

    sizes = {p.name: p.stat().st_size for p in WEIGHTS_DIR.iterdir()}
    assert sum(sizes.values()) < 100e6, sizes
    assert not any(name.endswith((".pt", ".ckpt", ".bin")) for name in sizes), sizes
    meta = json.loads((WEIGHTS_DIR / "meta.json").read_text())
    comps = load_components()
    assert comps.tokenizer.token_len == meta.get("token_len", 24) == comps.clip.config.text_config.max_position_embeddings
    assert not any(p.requires_grad and p.grad is not None for p in comps.unets["unet"].parameters())
