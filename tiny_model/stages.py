"""Training the embedded model in stages that each ship.

A session here ends after three hours and stops what it started, so no recipe may need more. Each
stage starts from the weights the repository ships, trains with checkpoints (a stopped stage
resumes), is measured by ground truth (``gate_metrics``) before and after, and replaces the
shipped weights only if it measures better. ``tiny_model/weights/stages.json`` records every stage
run: recipe, steps, wall time, the figures before and after, and whether it shipped.
``argus train-embedded`` replays the sequence from the seed: stage 0 is ``train.TrainConfig``'s
recipe, then every stage of ``STAGES`` in order.

Stages:
1. ``decoder_objects``: the VAE decoder alone, with a loss that weights object pixels (encoder
   frozen, so latents, and every UNet trained on them, stay valid). The round trip of rendered
   scenes bounds everything downstream.
2. ``whole_captions``: the text encoder reads 32 positions instead of 24 (hard captions are 27-29
   tokens and lost their last object and background). Only the 8 new position embeddings train
   (causal attention leaves every earlier hidden state as it was), then both UNets fine-tune from
   the shipped weights on the new hidden states, with hard and medium scenes over-sampled and an EMA.
3. ``eos_pooling``: the pooled embedding (the cache key and the UNets' ``text_embeds``) is taken at
   ``<eos>``, as real CLIP does, instead of at the highest token id (transformers' legacy rule for
   eos id 2), which hid every word after that token: 52-58% of distinct world captions shared their
   pooled embedding with another ("a red circle on the left" == "... on the right"). The ids of
   ``<eos>`` and ``<unk>`` are exchanged with their embedding rows (every hidden state stays bit for
   bit), only ``text_projection`` retrains on the <eos> state, then both UNets fine-tune.
4. ``longer_unet``: both UNets fine-tune longer on fresh scenes, medium and hard doubled, with an EMA.
5. ``decoder_means``: the decoder again, on the encoder's posterior means (what the UNets learn to
   produce and the gate decodes) instead of posterior samples, hard scenes doubled.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from tiny_model.models import (
    BASE_UNET,
    FAST_UNET,
    TOKEN_LEN,
    WEIGHTS_DIR,
    Components,
    load_components,
)
from tiny_model.train import scene_images
from tiny_model.world import BACKGROUNDS, sample_scene

KINDS = ("simple", "medium", "hard", "counting")
STAGES_FILE = "stages.json"


# ---------------------------------------------------------------------------------------------
# Ground truth for the gate


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """How each stage is measured before and after (fixed seeds, so the two are comparable)."""

    roundtrip_scenes_per_kind: int = 200
    prompts_per_kind: int = 24
    seeds: int = 2
    seed: int = 777


@torch.no_grad()
def k0_ground_truth(comps: Components, cfg: GateConfig, fast: bool = False) -> dict[str, dict[str, float]]:
    """Full-quality (or fast-model) generations scored by ground truth, per kind, seed-averaged."""
    from tiny_model.gt_eval import _generate, attribute_accuracy
    from tiny_model.pipeline import TinyPipeline
    from tiny_model.world import ground_truth_check

    pipe = TinyPipeline(comps)
    rng = random.Random(cfg.seed + 1)
    out = {}
    for kind in KINDS:
        prompts = [sample_scene(rng, kind).caption() for _ in range(cfg.prompts_per_kind)]
        rep = [p for p in prompts for _ in range(cfg.seeds)]
        seeds = [7000 + i for i in range(len(rep))]
        kw = {"unet": FAST_UNET.name, "num_inference_steps": FAST_UNET.num_inference_steps} if fast else {}
        img = _generate(pipe, rep, seeds, 48, **kw)
        checks = [ground_truth_check(im, p) for im, p in zip(img, rep)]
        out[kind] = {"gt_all_correct": float(np.mean([c["all"] for c in checks])),
                     "gt_attr_acc": float(np.mean([attribute_accuracy(c) for c in checks])), "n": len(rep)}
    return out


@torch.no_grad()
def pooled_collisions(comps: Components, n: int = 2000, seed: int = 0) -> float:
    """Share of ``n`` distinct world captions whose unit pooled embedding (the cache key) equals
    another's (cosine > 0.9999): the cache takes those for exact repeats."""
    from tiny_model.pipeline import encode_prompts

    rng = random.Random(seed)
    caps: set[str] = set()
    while len(caps) < n:
        caps.add(sample_scene(rng, KINDS[len(caps) % len(KINDS)]).caption())
    emb = torch.nn.functional.normalize(encode_prompts(comps.clip, comps.tokenizer, sorted(caps))[1], dim=-1)
    sim = emb @ emb.T
    sim.fill_diagonal_(-1.0)
    return float((sim.max(dim=1).values > 0.9999).float().mean())


def gate_metrics(comps: Components, cfg: GateConfig = GateConfig()) -> dict:
    """The figures a stage must improve: VAE round trip, k0 and fast ground truth, per kind, and
    how many captions share a cache key."""
    t = time.time()
    from tiny_model.gt_eval import vae_roundtrip

    out = {"vae_roundtrip": vae_roundtrip(comps, cfg.roundtrip_scenes_per_kind, cfg.seed),
           "k0": k0_ground_truth(comps, cfg), "fast": k0_ground_truth(comps, cfg, fast=True),
           "pooled_collisions": pooled_collisions(comps, seed=cfg.seed)}
    out["mean_gt_all_correct"] = {key: float(np.mean([out[key][k]["gt_all_correct"] for k in KINDS])) for key in ("vae_roundtrip", "k0", "fast")}
    out["wall_s"] = round(time.time() - t, 1)
    return out


# ---------------------------------------------------------------------------------------------
# Data


def balanced_scenes(n: int, seed: int, kind_weights: dict[str, float]) -> list:
    rng = random.Random(seed)
    kinds, w = list(kind_weights), np.array(list(kind_weights.values()), float)
    picks = np.random.default_rng(seed).choice(len(kinds), size=n, p=w / w.sum())
    return [sample_scene(rng, kinds[i]) for i in picks]


def stage_dataset(stage):
    """A UNet stage's training set: ``stage.num_scenes`` rendered scenes drawn by ``stage.kind_weights``
    under ``stage.seed``, with their captions and kinds."""
    from tiny_model.train import Dataset

    scenes = balanced_scenes(stage.num_scenes, stage.seed, dict(stage.kind_weights))
    return Dataset(scene_images(scenes), [s.caption() for s in scenes], [s.kind for s in scenes])


def object_mask(scenes, images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 1 where a pixel is not the scene's background colour (objects and their edges)."""
    bg = torch.tensor([BACKGROUNDS[s.background] for s in scenes], dtype=torch.float32)[:, :, None, None] / 127.5 - 1
    return ((images - bg).abs().amax(1, keepdim=True) > 0.05).float()


# ---------------------------------------------------------------------------------------------
# Stage 1: the decoder


@dataclasses.dataclass(frozen=True)
class DecoderStage:
    """Decoder-only fine-tune; the loss weights object pixels ``object_weight`` times."""

    name: str = "decoder_objects"
    steps: int = 2000
    batch: int = 32
    lr: float = 3e-4
    object_weight: float = 8.0
    num_scenes: int = 20_000
    kind_weights: tuple[tuple[str, float], ...] = (("simple", 1.0), ("medium", 1.0), ("hard", 1.0), ("counting", 1.0))
    seed: int = 101
    sample_posterior: bool = True
    """Decode posterior samples (robust to latents off the encoder's means) or the means themselves (sharper)."""

    def train(self, comps: Components, ckpt_dir: Path | None, log=print) -> dict:
        from tiny_model.train import StepCheckpoint, _cosine_lr

        scenes = balanced_scenes(self.num_scenes, self.seed, dict(self.kind_weights))
        images = scene_images(scenes)
        masks = object_mask(scenes, images)
        vae = comps.vae
        with torch.no_grad():  # the encoder is frozen: its posterior is computed once
            post = [vae.encode(images[i : i + 500]).latent_dist for i in range(0, len(scenes), 500)]
            mean, std = torch.cat([p.mean for p in post]), torch.cat([p.std for p in post])
        vae.requires_grad_(False)
        vae.decoder.requires_grad_(True)
        vae.post_quant_conv.requires_grad_(True)
        params = [p for p in vae.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(self.seed)
        cfg = _ckpt_cfg(ckpt_dir, every=250)
        run = StepCheckpoint.open(cfg, self.name, {"vae": vae}, opt, g)
        vae.train()
        for step in range(run.start, self.steps):
            idx = torch.randint(len(scenes), (self.batch,), generator=g)
            x, m = images[idx], masks[idx]
            z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g) if self.sample_posterior else mean[idx]
            rec = vae.decode(z).sample
            w = 1 + (self.object_weight - 1) * m
            loss = ((rec - x).abs() * w).mean() + (((rec - x) ** 2) * w).mean()
            _cosine_lr(opt, self.lr, step, self.steps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.losses.append(loss.item())
            if step % 100 == 0 or step == self.steps - 1:
                log(f"[{self.name}] step {step}/{self.steps} loss {np.mean(run.losses[-100:]):.4f} ({time.time() - run.t0:.0f}s)")
            run.maybe_save(step, self.steps)
        vae.eval()
        vae.requires_grad_(True)
        return {"steps": self.steps, "final_loss": float(np.mean(run.losses[-50:])), "train_wall_s": round(run.wall_before_s + time.time() - run.t0, 1)}


# ---------------------------------------------------------------------------------------------
# Stage 2: whole captions


@dataclasses.dataclass(frozen=True)
class WholeCaptionStage:
    """Extend the text encoder to ``token_len`` positions, then fine-tune both UNets on it."""

    name: str = "whole_captions"
    token_len: int = TOKEN_LEN
    clip_steps: int = 300
    clip_batch: int = 256
    clip_lr: float = 2e-3
    num_scenes: int = 40_000
    kind_weights: tuple[tuple[str, float], ...] = (("simple", 1.0), ("medium", 1.5), ("hard", 1.5), ("counting", 1.0))
    unet_steps: int = 5000
    fast_unet_steps: int = 1000
    unet_batch: int = 96
    unet_lr: float = 4e-4
    ema_decay: float = 0.999
    seed: int = 202

    def train(self, comps: Components, ckpt_dir: Path | None, log=print) -> dict:
        walls = {}
        t = time.time()
        data = stage_dataset(self)
        old_len = comps.tokenizer.token_len
        comps.clip = extend_positions(comps.clip, self.token_len)
        comps.tokenizer = comps.tokenizer.with_token_len(self.token_len)
        clip_loss = self._train_new_positions(comps, data, old_len, ckpt_dir, log)
        walls["clip"] = round(time.time() - t, 1)
        losses = finetune_unets(self, comps, data, ckpt_dir, walls)
        return {"clip_steps": self.clip_steps, "unet_steps": self.unet_steps, "fast_unet_steps": self.fast_unet_steps,
                "final_loss": {"clip_new_positions": clip_loss, **losses}, "phase_wall_s": walls}

    def _train_new_positions(self, comps: Components, data, old_len: int, ckpt_dir: Path | None, log) -> float:
        """Contrastive loss, gradients only into position rows >= ``old_len`` (no weight decay, so
        the frozen rows stay bit for bit)."""
        from tiny_model.train import StepCheckpoint, _cosine_lr

        clip = comps.clip
        clip.requires_grad_(False)
        pos = clip.text_model.embeddings.position_embedding.weight
        pos.requires_grad_(True)
        keep = torch.zeros_like(pos)
        keep[old_len:] = 1
        hook = pos.register_hook(lambda grad: grad * keep)
        opt = torch.optim.Adam([pos], lr=self.clip_lr)
        g = torch.Generator().manual_seed(self.seed + 1)
        run = StepCheckpoint.open(_ckpt_cfg(ckpt_dir, every=100), f"{self.name}_clip", {"clip": clip}, opt, g)
        ids_all = torch.from_numpy(comps.tokenizer(data.captions))
        long_rows = torch.nonzero((ids_all[:, old_len - 1] != 0) & (ids_all[:, old_len - 1] != comps.tokenizer.eos_id)).flatten()  # captions past the old length
        clip.train()
        for step in range(run.start, self.clip_steps):
            idx = long_rows[torch.randint(len(long_rows), (self.clip_batch,), generator=g)]
            out = clip(input_ids=ids_all[idx], pixel_values=data.images[idx], return_loss=True)
            _cosine_lr(opt, self.clip_lr, step, self.clip_steps, warmup=20)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            run.losses.append(out.loss.item())
            if step % 50 == 0 or step == self.clip_steps - 1:
                log(f"[{self.name}_clip] step {step}/{self.clip_steps} loss {np.mean(run.losses[-50:]):.4f} ({time.time() - run.t0:.0f}s)")
            run.maybe_save(step, self.clip_steps)
        hook.remove()
        clip.eval()
        clip.requires_grad_(True)
        return float(np.mean(run.losses[-50:]))


def finetune_unets(stage, comps: Components, data, ckpt_dir: Path | None, walls: dict, teacher: str | None = None) -> dict[str, float]:
    """Both UNets fine-tuned from the shipped weights on ``data`` with ``stage``'s batch, learning rate,
    EMA, seed and step counts (checkpointed every 250 steps; a UNet with 0 steps is left alone); the
    latents keep the scale the UNets know, since no stage changes the encoder. With ``teacher`` (a
    UNet of ``comps``, run without gradients) the targets are its outputs (``train_unet``). Returns each
    trained UNet's final loss; adds phase wall times."""
    from tiny_model.train import encode_all, train_unet

    t = time.time()
    latents, hidden, pooled, scaling = encode_all(comps, data)
    latents = latents / scaling * comps.vae_scaling_factor
    walls["encode"] = round(time.time() - t, 1)
    cfg = dataclasses.replace(_ckpt_cfg(ckpt_dir, every=250), unet_batch=stage.unet_batch, unet_lr=stage.unet_lr,
                              ema_decay=stage.ema_decay, seed=stage.seed)
    if teacher is not None:
        comps.unets[teacher].eval()
    losses = {}
    for spec, steps in ((BASE_UNET, stage.unet_steps), (FAST_UNET, stage.fast_unet_steps)):
        if steps <= 0:
            continue
        t = time.time()
        losses[spec.name] = float(np.mean(train_unet(cfg, comps, spec.name, steps, latents, hidden, pooled, teacher=teacher)[-50:]))
        walls[spec.name] = round(time.time() - t, 1)
    return losses


def extend_positions(clip, token_len: int):
    """A CLIP whose text tower reads ``token_len`` positions; the first ones keep their embeddings,
    the new ones start as copies of the last trained one."""
    from transformers import CLIPModel

    from tiny_model.models import clip_config

    old = clip.text_model.embeddings.position_embedding.weight.detach()
    if old.shape[0] >= token_len:
        return clip
    new = CLIPModel(clip_config(clip.config.text_config.vocab_size, token_len, clip.config.text_config.eos_token_id))
    state = clip.state_dict()
    state["text_model.embeddings.position_embedding.weight"] = torch.cat([old, old[-1:].expand(token_len - old.shape[0], -1)])
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    return new.eval()


# ---------------------------------------------------------------------------------------------
# Stage 3: pool at <eos>


def pool_at_eos(tokenizer, clip):
    """(tokenizer, CLIP) that pool at ``<eos>``: its id and ``<unk>``'s exchange, with their token
    embedding rows, so every hidden state is unchanged; the config's eos id leaves the legacy rule."""
    from transformers import CLIPModel

    from tiny_model.models import clip_config

    if tokenizer.eos_id != 2:
        return tokenizer, clip
    tok = tokenizer.with_swapped_ids("<eos>", "<unk>")
    a, b = tokenizer.eos_id, tokenizer.special_id("<unk>")
    state = clip.state_dict()
    emb = state["text_model.embeddings.token_embedding.weight"].clone()
    emb[[a, b]] = emb[[b, a]]
    state["text_model.embeddings.token_embedding.weight"] = emb
    new = CLIPModel(clip_config(clip.config.text_config.vocab_size, tok.token_len, tok.eos_id))
    new.load_state_dict(state)
    return tok, new.eval()


@dataclasses.dataclass(frozen=True)
class EosPoolingStage:
    """Pool at ``<eos>``, retrain only ``text_projection`` (contrastive, image tower frozen), then
    fine-tune both UNets on the new ``text_embeds`` with medium and hard scenes over-sampled."""

    name: str = "eos_pooling"
    projection_steps: int = 1500
    projection_batch: int = 256
    projection_lr: float = 2e-3
    num_scenes: int = 40_000
    kind_weights: tuple[tuple[str, float], ...] = (("simple", 1.0), ("medium", 2.0), ("hard", 1.5), ("counting", 1.0))
    unet_steps: int = 5000
    fast_unet_steps: int = 1500
    unet_batch: int = 96
    unet_lr: float = 3e-4
    ema_decay: float = 0.999
    seed: int = 303

    def train(self, comps: Components, ckpt_dir: Path | None, log=print) -> dict:
        walls = {}
        t = time.time()
        data = stage_dataset(self)
        comps.tokenizer, comps.clip = pool_at_eos(comps.tokenizer, comps.clip)
        proj_loss = self._train_projection(comps, data, log)
        walls["projection"] = round(time.time() - t, 1)
        losses = finetune_unets(self, comps, data, ckpt_dir, walls)
        return {"projection_steps": self.projection_steps, "unet_steps": self.unet_steps, "fast_unet_steps": self.fast_unet_steps,
                "final_loss": {"text_projection": proj_loss, **losses}, "phase_wall_s": walls}

    @torch.no_grad()
    def _features(self, comps: Components, data) -> tuple[torch.Tensor, torch.Tensor]:
        """(<eos> hidden states, unit image embeddings) of the whole dataset: both towers stay frozen."""
        clip, hid, img = comps.clip, [], []
        ids = torch.from_numpy(comps.tokenizer(data.captions))
        for i in range(0, len(ids), 512):
            hid.append(clip.text_model(input_ids=ids[i : i + 512]).pooler_output)
            f = clip.get_image_features(pixel_values=data.images[i : i + 512])
            img.append(torch.nn.functional.normalize(getattr(f, "pooler_output", f), dim=-1))
        return torch.cat(hid), torch.cat(img)

    def _train_projection(self, comps: Components, data, log) -> float:
        """InfoNCE on ``text_projection`` alone (a few seconds: the features are computed once)."""
        hid, img = self._features(comps, data)
        proj, scale = comps.clip.text_projection, comps.clip.logit_scale.detach().exp()
        opt = torch.optim.Adam(proj.parameters(), lr=self.projection_lr)
        g = torch.Generator().manual_seed(self.seed + 1)
        labels = torch.arange(self.projection_batch)
        losses = []
        for step in range(self.projection_steps):
            idx = torch.randint(len(hid), (self.projection_batch,), generator=g)
            logits = scale * torch.nn.functional.normalize(proj(hid[idx]), dim=-1) @ img[idx].T
            loss = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if step % 500 == 0 or step == self.projection_steps - 1:
                log(f"[{self.name}_projection] step {step}/{self.projection_steps} loss {np.mean(losses[-100:]):.4f}")
        return float(np.mean(losses[-100:]))


@dataclasses.dataclass(frozen=True)
class LongerUnetStage:
    """Both UNets fine-tuned longer from the shipped weights, on fresh scenes with medium and hard
    ones doubled: stage 3's 5,000 steps took medium prompts from 29% to 56% fully correct and were
    still rising. The text encoder and VAE are unchanged, so the cache keys stay the same."""

    name: str = "longer_unet"
    num_scenes: int = 40_000
    kind_weights: tuple[tuple[str, float], ...] = (("simple", 1.0), ("medium", 2.0), ("hard", 2.0), ("counting", 1.0))
    unet_steps: int = 7000
    fast_unet_steps: int = 2000
    unet_batch: int = 96
    unet_lr: float = 2e-4
    ema_decay: float = 0.999
    seed: int = 404
    teacher: str | None = None
    """None: the UNets learn from the data; a UNet's name: they learn its outputs (``train_unet``)."""

    def train(self, comps: Components, ckpt_dir: Path | None, log=print) -> dict:
        walls = {}
        t = time.time()
        data = stage_dataset(self)
        walls["scenes"] = round(time.time() - t, 1)
        losses = finetune_unets(self, comps, data, ckpt_dir, walls, teacher=self.teacher)
        return {"unet_steps": self.unet_steps, "fast_unet_steps": self.fast_unet_steps,
                "final_loss": losses, "phase_wall_s": walls}


@dataclasses.dataclass(frozen=True)
class DistillFastStage(LongerUnetStage):
    """The fast UNet (same small architecture, same 20 steps) trained on the base UNet's outputs:
    output-matching distillation, the base's epsilon at the same noisy latent and condition as the
    target. The fast UNet had 6,800 steps at learning rates up to 2e-4 over six stages and reached
    54% attribute accuracy on simple prompts; 600 steps at 5e-4 took it to 72% (distilled) and 70%
    (from the data), so it was under-trained, not out of capacity. Only the fast UNet changes."""

    name: str = "distill_fast"
    kind_weights: tuple[tuple[str, float], ...] = (("simple", 2.0), ("medium", 1.0), ("hard", 1.0), ("counting", 1.0))
    unet_steps: int = 0
    """The base UNet is the teacher: it does not train."""
    fast_unet_steps: int = 7000
    unet_lr: float = 5e-4
    seed: int = 707
    teacher: str | None = BASE_UNET.name


# ---------------------------------------------------------------------------------------------
# Running stages


DECODER_MEANS = DecoderStage(name="decoder_means", sample_posterior=False, seed=505,
                             kind_weights=(("simple", 1.0), ("medium", 1.5), ("hard", 2.0), ("counting", 1.0)))
"""Stage 5: the decoder again, now on the encoder's posterior means, which is what the UNets are
trained to produce and what the gate's round trip decodes. Stage 1 decoded posterior samples and
left the round trip at 80% simple and 50% hard, which caps every hard prompt downstream."""

HARD_UNET = LongerUnetStage(name="hard_unet", kind_weights=(("simple", 1.0), ("medium", 2.0), ("hard", 4.0), ("counting", 1.0)),
                            unet_steps=4000, fast_unet_steps=800, seed=606)
"""Stage 6: both UNets again, now with hard scenes weighted 4x. After stage 5 the decoder passes 78% of
hard scenes on a round trip but the base UNet only 25% at k0, so hard prompts are limited by the
UNet's binding of three objects; stage 4's 7,000 steps moved medium 56% -> 71% and hard 19% -> 25%."""

DISTILL_FAST = DistillFastStage()
"""Stage 7: the fast UNet distilled from the base (see ``DistillFastStage``)."""

HARD_UNET2 = dataclasses.replace(HARD_UNET, name="hard_unet2", unet_steps=6000, fast_unet_steps=0, seed=909)
"""Stage 8: the base UNet alone, stage 6's recipe for 6,000 steps. Stage 6's 4,000 steps took hard
prompts 25% -> 38% fully correct by the gate against a VAE round trip of 78%, with the loss still
falling; the fast UNet, distilled in stage 7, is left as it is."""

DISTILL_FAST2 = dataclasses.replace(DISTILL_FAST, name="distill_fast2", fast_unet_steps=5000, unet_lr=3e-4, seed=1010,
                                    kind_weights=(("simple", 3.0), ("medium", 1.0), ("hard", 1.0), ("counting", 1.0)))
"""Stage 9: the fast UNet distilled again, now from stage 8's stronger base, with simple scenes
weighted 3x. After stage 8 the fast model's attribute accuracy on simple prompts was 0.89-0.95 of
k0's depending on the sample, against a target of 0.9; its teacher was stage 7's base. Measured
(sixth session): the fast model's gate mean 0.479 -> 0.505, inside the noise, so not shipped; its
record stays in stages.json so the replay runs the same gated sequence."""

STAGES = {s.name: s for s in (DecoderStage(), WholeCaptionStage(), EosPoolingStage(), LongerUnetStage(), DECODER_MEANS, HARD_UNET,
                              DISTILL_FAST, HARD_UNET2, DISTILL_FAST2)}
"""In order."""


def _ckpt_cfg(ckpt_dir: Path | None, every: int):
    from tiny_model.train import TrainConfig

    return TrainConfig(ckpt_dir=ckpt_dir, ckpt_every=every, log_every=100)


def _records(weights_dir: Path) -> list[dict]:
    path = Path(weights_dir) / STAGES_FILE
    return json.loads(path.read_text()) if path.exists() else []


def _noise(before: dict, after: dict, kind: str, variant: str = "k0") -> float:
    """Two standard errors of the difference of two fully-correct shares (binomial, n generations each)."""
    p1, p2 = before[variant][kind]["gt_all_correct"], after[variant][kind]["gt_all_correct"]
    n1, n2 = before[variant][kind].get("n", 48), after[variant][kind].get("n", 48)
    return 2.0 * float(np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2))


def better(before: dict, after: dict) -> bool:
    """A stage ships when the mean fully-correct share rises for k0 or for the VAE round trip, falls for
    neither, and the k0 share falls for no kind by more than the measurement's noise (two standard
    errors of the difference; with 48 generations a kind's share moves by 5-14 points from seeds alone:
    a fixed 5-point tolerance refused stage 2 for counting's 92% -> 81%, which 128 fresh generations
    per kind measured as 87.5% -> 87.5%). A fall of 5 points or more in the share of captions that
    share a cache key (``pooled_collisions``) also counts as a rise, and so does a rise of the fast
    model's mean by more than its noise with no kind of it falling beyond noise (a stage that trains
    only the fast UNet leaves k0 and the round trip bit for bit the same)."""
    b, a = before["mean_gt_all_correct"], after["mean_gt_all_correct"]

    def fell(variant: str) -> list[str]:
        return [k for k in KINDS
                if before[variant][k]["gt_all_correct"] - after[variant][k]["gt_all_correct"] > max(_noise(before, after, k, variant), 0.05)]

    keys = "pooled_collisions" in before and "pooled_collisions" in after and after["pooled_collisions"] <= before["pooled_collisions"] - 0.05
    fast_noise = float(np.sqrt(np.mean([_noise(before, after, k, "fast") ** 2 for k in KINDS]) / len(KINDS)))
    fast = a["fast"] - b["fast"] > fast_noise and not fell("fast")
    return a["k0"] >= b["k0"] and a["vae_roundtrip"] >= b["vae_roundtrip"] and not fell("k0") and (
        a["k0"] > b["k0"] or a["vae_roundtrip"] > b["vae_roundtrip"] or keys or fast)


def run_stage(name: str, src_dir: Path = WEIGHTS_DIR, out_dir: Path | None = None, ckpt_dir: Path | None = None,
              gate: GateConfig = GateConfig(), force: bool = False, log=print) -> dict:
    """Train stage ``name`` from the weights in ``src_dir``; write them to ``out_dir`` (default: a
    candidate directory beside the checkpoints) and, if they measure better (or ``force``), into
    ``src_dir`` as the shipped weights, with the stage's record appended to stages.json."""
    from tiny_model.train import save

    stage = STAGES[name]
    torch.set_num_threads(2)
    torch.manual_seed(stage.seed)
    ckpt_dir = Path(ckpt_dir or Path("runs/stages") / name)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(out_dir or ckpt_dir / "candidate")
    t0 = time.time()
    comps = load_components(src_dir)
    before_path = ckpt_dir / "before.json"
    if before_path.exists():
        before = json.loads(before_path.read_text())
    else:
        before = gate_metrics(comps, gate)
        before_path.write_text(json.dumps(before, indent=1))
    log(f"[{name}] before: {before['mean_gt_all_correct']}")
    result = stage.train(comps, ckpt_dir, log)
    after = gate_metrics(comps, gate)
    log(f"[{name}] after: {after['mean_gt_all_correct']}")
    meta = json.loads((Path(src_dir) / "meta.json").read_text())
    meta["token_len"] = comps.tokenizer.token_len
    meta.setdefault("stages", []).append(name)
    record = {"stage": name, "recipe": {k: v for k, v in dataclasses.asdict(stage).items()}, **result,
              "wall_s": round(time.time() - t0, 1), "before": before, "after": after, "shipped": force or better(before, after),
              "date": time.strftime("%Y-%m-%d")}
    save(dataclasses.replace(_ckpt_cfg(None, 1), out_dir=out_dir), comps, meta)
    records = _records(src_dir) + [record]
    (out_dir / STAGES_FILE).write_text(json.dumps(records, indent=1) + "\n")
    if record["shipped"] and Path(out_dir).resolve() != Path(src_dir).resolve():
        save(dataclasses.replace(_ckpt_cfg(None, 1), out_dir=src_dir), comps, meta)
        (Path(src_dir) / STAGES_FILE).write_text(json.dumps(records, indent=1) + "\n")
    elif not record["shipped"]:  # measured and not shipped: still recorded beside the shipped weights
        (Path(src_dir) / STAGES_FILE).write_text(json.dumps(records, indent=1) + "\n")
    log(f"[{name}] shipped={record['shipped']} ({record['wall_s']}s)")
    return record


def replay_from_seed(out_dir: Path, ckpt_dir: Path, seed: int = 0, log=print) -> list[dict]:
    """``argus train-embedded``: stage 0 (the seed recipe), then every stage in order, each gated."""
    from tiny_model.train import TrainConfig, train_embedded

    out_dir = Path(out_dir)
    if not (out_dir / "meta.json").exists():
        train_embedded(TrainConfig(seed=seed, out_dir=out_dir, ckpt_dir=Path(ckpt_dir) / "stage0"))
    done = {r["stage"] for r in _records(out_dir)}
    for name in STAGES:
        if name not in done:
            run_stage(name, out_dir, ckpt_dir=Path(ckpt_dir) / name, log=log)
    return _records(out_dir)


def stages_markdown(records: list[dict]) -> str:
    """A table of the stage records (for docs/embedded_model.md): what each stage changed, by ground truth."""
    lines = ["| stage | steps | wall (train + gate) | shipped | VAE round trip (s/m/h/c) | k0 fully correct (s/m/h/c) | fast fully correct (s/m/h/c) |",
             "|---|---|---|---|---|---|---|"]

    def row(m: dict, key: str) -> str:
        return "/".join(f"{100 * m[key][k]['gt_all_correct']:.0f}" for k in KINDS)

    for r in records:
        steps = ", ".join(f"{k.replace('_steps', '')} {v}" for k, v in r.items() if k.endswith("steps") and isinstance(v, int))
        lines.append(f"| {r['stage']} | {steps} | {r['wall_s'] / 60:.0f} min | {'yes' if r['shipped'] else 'no'} "
                     f"| {row(r['before'], 'vae_roundtrip')} -> {row(r['after'], 'vae_roundtrip')} "
                     f"| {row(r['before'], 'k0')} -> {row(r['after'], 'k0')} | {row(r['before'], 'fast')} -> {row(r['after'], 'fast')} |")
    return "\n".join(lines) + "\n"


def train_command(smoke: bool, out: Path | None, seed: int, recipe: str = "stages", ckpt: Path | None = None) -> dict:
    """``argus train-embedded``: ``recipe="stages"`` (the shipped weights): stage 0, the seed recipe,
    then every stage of ``tiny_model.stages`` in order, each gated by ground truth, into ``out``
    (default runs/train_stages/weights; checkpoints beside it, so a stopped run resumes). ``"seed"``:
    stage 0 alone; ``"long"``: the earlier long recipe, checkpointed into ``ckpt`` (default
    runs/train_long). ``smoke``: a few steps of stage 0 into runs/smoke_weights (CI). Returns the wall
    time per phase, or each stage's record."""
    if recipe == "stages" and not smoke:
        root = Path(ckpt or "runs/train_stages")
        records = replay_from_seed(out or root / "weights", root, seed)
        return {r["stage"]: {"wall_s": r["wall_s"], "shipped": r["shipped"], "after": r["after"]["mean_gt_all_correct"]} for r in records}
    from tiny_model.train import TrainConfig, train_embedded

    if smoke:
        cfg = TrainConfig.smoke(out or Path("runs/smoke_weights"))
        cfg.ckpt_dir = ckpt
    elif recipe == "long":
        cfg = TrainConfig.long(ckpt or Path("runs/train_long"))
    else:
        cfg = TrainConfig(seed=seed, ckpt_dir=ckpt, out_dir=Path("runs/train_seed"))  # never over the shipped weights
    if out and not smoke:
        cfg.out_dir = out
    cfg.seed = seed
    return train_embedded(cfg)["wall_s"]
