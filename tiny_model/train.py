"""Reproduce the embedded model's weights from a seed: tokenizer -> CLIP -> VAE -> UNets.

Each phase is a function with a typed hand-off; the whole run is ``train_embedded(TrainConfig())``
(``argus train-embedded``). ``TrainConfig.smoke()`` trains a few steps of everything for CI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tiny_model.models import (
    BASE_UNET,
    FAST_UNET,
    SEED_TOKEN_LEN,
    WEIGHTS_DIR,
    Components,
    PromptTokenizer,
    build_random,
    default_time_ids,
    scheduler_kwargs,
)
from orchestrator.paths import SHARED_DATA
from tiny_model.world import render, sample_scene

REAL_PROMPT_FILES = ("diffusiondb_2m_first_5k_prompts.txt", "PartiPrompts.tsv", "drawbench.csv", "geneval_evaluation_metadata.jsonl")


@dataclasses.dataclass
class TrainConfig:
    """Step counts and batch sizes for each phase; the defaults are the shipped weights' recipe."""

    seed: int = 0
    num_scenes: int = 40_000
    vocab_size: int = 2048
    token_len: int = SEED_TOKEN_LEN  # the seed recipe's; stage 2 of tiny_model.stages extends it
    clip_steps: int = 800
    clip_batch: int = 256
    clip_lr: float = 1e-3
    vae_steps: int = 800
    vae_batch: int = 32
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    unet_steps: int = 3500
    fast_unet_steps: int = 1500
    unet_batch: int = 96
    unet_lr: float = 1e-3
    cond_dropout: float = 0.1
    num_threads: int = 2
    out_dir: Path = WEIGHTS_DIR
    shared_prompts_dir: Path | None = SHARED_DATA / "prompts"
    log_every: int = 100
    ema_decay: float = 0.0  # 0 keeps the raw weights; > 0 ships an exponential moving average of them
    ckpt_dir: Path | None = None  # phase results and UNet progress land here, so a stopped run resumes
    ckpt_every: int = 250  # UNet steps between checkpoints

    @classmethod
    def long(cls, ckpt_dir: Path) -> TrainConfig:
        """The longer recipe in training (many CPU hours): more scenes, 10x the VAE's and the base UNet's
        steps, EMA. The VAE's steps matter first: at the shipped 800, its own round trip keeps only 5%
        of hard scenes correct by ground truth, which bounds any UNet."""
        return cls(num_scenes=100_000, vae_steps=8000, unet_steps=35_000, unet_lr=5e-4, ema_decay=0.9995, num_threads=1, ckpt_dir=ckpt_dir)

    @classmethod
    def smoke(cls, out_dir: Path) -> TrainConfig:
        return cls(
            num_scenes=256, vocab_size=400, clip_steps=3, clip_batch=32, vae_steps=3, vae_batch=16,
            unet_steps=3, fast_unet_steps=2, unet_batch=16, out_dir=out_dir, shared_prompts_dir=None, log_every=1,
        )


@dataclasses.dataclass
class Dataset:
    images: torch.Tensor  # (N, 3, 32, 32) float in [-1, 1]
    captions: list[str]
    kinds: list[str]


def _log(phase: str, step: int, total: int, loss: float, t0: float) -> None:
    print(f"[{phase}] step {step}/{total} loss {loss:.4f} ({time.time() - t0:.0f}s)", flush=True)


def _cosine_lr(opt, base_lr: float, step: int, total: int, warmup: int = 50) -> None:
    lr = base_lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))
    for g in opt.param_groups:
        g["lr"] = max(lr, base_lr * 0.02)


def scene_images(scenes) -> torch.Tensor:
    """Rendered scenes as the VAE takes them: (N, 3, 32, 32) float in [-1, 1]."""
    arr = np.stack([np.asarray(render(s)) for s in scenes])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def make_dataset(cfg: TrainConfig) -> Dataset:
    rng = random.Random(cfg.seed)
    scenes = [sample_scene(rng) for _ in range(cfg.num_scenes)]
    return Dataset(scene_images(scenes), [s.caption() for s in scenes], [s.kind for s in scenes])


def real_prompts(prompts_dir: Path | None) -> list[str]:
    """Real prompts from ../shared/data/prompts, so real text tokenizes into known subwords."""
    if prompts_dir is None or not prompts_dir.exists():
        return []
    out: list[str] = []
    for name in REAL_PROMPT_FILES:
        path = prompts_dir / name
        if path.exists():
            out.extend(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    return out


def train_tokenizer(cfg: TrainConfig, data: Dataset) -> PromptTokenizer:
    tok = PromptTokenizer.train(data.captions + real_prompts(cfg.shared_prompts_dir), vocab_size=cfg.vocab_size)
    return tok.with_token_len(cfg.token_len)


def train_clip(cfg: TrainConfig, comps: Components, data: Dataset) -> list[float]:
    """Contrastive (InfoNCE) training of the tiny CLIP on (rendered image, caption) pairs."""
    clip = comps.clip.train()
    opt = torch.optim.AdamW(clip.parameters(), lr=cfg.clip_lr, weight_decay=0.01)
    ids_all = torch.from_numpy(comps.tokenizer(data.captions))
    g = torch.Generator().manual_seed(cfg.seed)
    losses, t0 = [], time.time()
    for step in range(cfg.clip_steps):
        idx = torch.randint(len(data.captions), (cfg.clip_batch,), generator=g)
        out = clip(input_ids=ids_all[idx], pixel_values=data.images[idx], return_loss=True)
        _cosine_lr(opt, cfg.clip_lr, step, cfg.clip_steps)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
        if step % cfg.log_every == 0 or step == cfg.clip_steps - 1:
            _log("clip", step, cfg.clip_steps, float(np.mean(losses[-cfg.log_every :])), t0)
    clip.eval()
    return losses


def train_vae(cfg: TrainConfig, comps: Components, data: Dataset) -> list[float]:
    """AutoencoderKL with reconstruction (L1 + MSE) and a small KL term; checkpointed like the UNets.

    The VAE bounds everything downstream: a shape its reconstruction blurs, no UNet can draw. Its
    encode-decode round trip of rendered scenes is the ceiling of the model's ground-truth accuracy."""
    vae = comps.vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    run = StepCheckpoint.open(cfg, "vae_steps", {"vae": vae}, opt, g)
    for step in range(run.start, cfg.vae_steps):
        x = data.images[torch.randint(len(data.captions), (cfg.vae_batch,), generator=g)]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.vae_kl_weight * post.kl().mean()
        _cosine_lr(opt, cfg.vae_lr, step, cfg.vae_steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.losses.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.vae_steps - 1:
            _log("vae", step, cfg.vae_steps, float(np.mean(run.losses[-cfg.log_every :])), run.t0)
        run.maybe_save(step, cfg.vae_steps)
    vae.eval()
    return run.losses


@torch.no_grad()
def encode_all(comps: Components, data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Latent means, text hidden states and pooled embeds for the whole dataset (frozen encoders)."""
    lat, hid, pool = [], [], []
    for i in range(0, len(data.captions), 512):
        lat.append(comps.vae.encode(data.images[i : i + 512]).latent_dist.mean)
        ids = torch.from_numpy(comps.tokenizer(data.captions[i : i + 512]))
        out = comps.clip.text_model(input_ids=ids)
        hid.append(out.last_hidden_state)
        pool.append(comps.clip.text_projection(out.pooler_output))
    latents = torch.cat(lat)
    scaling = float(1.0 / latents.std())
    return latents * scaling, torch.cat(hid), torch.cat(pool), scaling


@dataclasses.dataclass
class StepCheckpoint:
    """A training loop's resumable state: modules, optimiser, generator, step and losses, saved every
    ``cfg.ckpt_every`` steps to ``<ckpt_dir>/<name>.pt``, so that a rerun resumes bit for bit as if
    never stopped (sessions here end after hours; the long recipe runs for more). Without a
    ``ckpt_dir`` nothing is saved."""

    path: Path | None
    every: int
    modules: dict[str, torch.nn.Module]
    opt: torch.optim.Optimizer
    generator: torch.Generator
    start: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)
    wall_before_s: float = 0.0
    t0: float = dataclasses.field(default_factory=time.time)

    @classmethod
    def open(cls, cfg: TrainConfig, name: str, modules: dict[str, torch.nn.Module], opt, generator) -> StepCheckpoint:
        path = Path(cfg.ckpt_dir) / f"{name}.pt" if cfg.ckpt_dir else None
        run = cls(path, cfg.ckpt_every, modules, opt, generator)
        if path is not None and path.exists():
            state = torch.load(path, weights_only=False)
            for key, module in modules.items():
                module.load_state_dict(state[key])
            opt.load_state_dict(state["opt"])
            generator.set_state(state["generator"])
            run.start, run.losses, run.wall_before_s = state["step"], state["losses"], state.get("wall_s", 0.0)
            print(f"[{name}] resumed at step {run.start} after {run.wall_before_s:.0f}s of training", flush=True)
        return run

    def maybe_save(self, step: int, total: int) -> None:
        if self.path is None or not ((step + 1) % self.every == 0 or step == total - 1):
            return
        state = {key: m.state_dict() for key, m in self.modules.items()}
        state.update(opt=self.opt.state_dict(), generator=self.generator.get_state(), step=step + 1, losses=self.losses,
                     wall_s=self.wall_before_s + time.time() - self.t0)
        torch.save(state, self.path.with_suffix(".tmp"))
        self.path.with_suffix(".tmp").replace(self.path)


def train_unet(cfg: TrainConfig, comps: Components, name: str, steps: int, latents, hidden, pooled,
               teacher: str | None = None) -> list[float]:
    """DDPM epsilon objective with classifier-free-guidance dropout (uncond = the empty prompt).

    With ``teacher`` (another UNet of ``comps``, frozen) the target is that UNet's epsilon prediction
    at the same noisy latent and (possibly dropped) condition, not the sampled noise: output-matching
    distillation, whose target has none of the noise's variance, so a small student learns the
    teacher's conditional mean faster than from the data.

    With ``cfg.ckpt_dir`` the model, optimiser, EMA and generator state are saved every
    ``cfg.ckpt_every`` steps and a rerun resumes from there, bit for bit as if never stopped.
    """
    import copy

    from diffusers import DDPMScheduler

    kw = {k: v for k, v in scheduler_kwargs().items() if k not in ("set_alpha_to_one",)}
    noise_sched = DDPMScheduler(**kw)
    unet = comps.unets[name].train()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.01)
    ema = copy.deepcopy(unet).eval() if cfg.ema_decay > 0 else None
    with torch.no_grad():
        ids = torch.from_numpy(comps.tokenizer([""]))
        out = comps.clip.text_model(input_ids=ids)
        u_hid, u_pool = out.last_hidden_state, comps.clip.text_projection(out.pooler_output)
    time_ids = torch.from_numpy(default_time_ids()).expand(cfg.unet_batch, -1)
    g = torch.Generator().manual_seed(cfg.seed + 2 + len(name))
    run = StepCheckpoint.open(cfg, name, {"unet": unet, **({"ema": ema} if ema is not None else {})}, opt, g)
    for step in range(run.start, steps):
        idx = torch.randint(len(latents), (cfg.unet_batch,), generator=g)
        x0, hid, pool = latents[idx], hidden[idx].clone(), pooled[idx].clone()
        drop = torch.rand(cfg.unet_batch, generator=g) < cfg.cond_dropout
        hid[drop], pool[drop] = u_hid, u_pool
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.unet_batch,), generator=g)
        xt = noise_sched.add_noise(x0, noise, t)
        cond = {"encoder_hidden_states": hid, "added_cond_kwargs": {"text_embeds": pool, "time_ids": time_ids}}
        if teacher is None:
            target = noise
        else:
            with torch.no_grad():
                target = comps.unets[teacher](xt, t, **cond).sample
        pred = unet(xt, t, **cond).sample
        loss = F.mse_loss(pred, target)
        _cosine_lr(opt, cfg.unet_lr, step, steps, warmup=200)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                    pe.lerp_(p, 1 - cfg.ema_decay)
        run.losses.append(loss.item())
        if step % cfg.log_every == 0 or step == steps - 1:
            _log(name, step, steps, float(np.mean(run.losses[-cfg.log_every :])), run.t0)
        run.maybe_save(step, steps)
    if ema is not None:
        unet.load_state_dict(ema.state_dict())
    unet.eval()
    return run.losses


def save(cfg: TrainConfig, comps: Components, meta: dict) -> None:
    from safetensors.torch import save_file

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    comps.tokenizer.save(out / "tokenizer.json")

    def dump(module, path):
        save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))

    dump(comps.clip, out / "clip.safetensors")
    dump(comps.vae, out / "vae.safetensors")
    for name, unet in comps.unets.items():
        dump(unet, out / f"{name}.safetensors")
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def train_embedded(cfg: TrainConfig) -> dict:
    """Run every phase and write the weights; returns the metadata written to meta.json."""
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    walls: dict[str, float] = {}

    def phase(name, fn, *args):
        t = time.time()
        result = fn(*args)
        walls[name] = round(time.time() - t, 1)
        print(f"== {name} done in {walls[name]}s", flush=True)
        return result

    ckpt = Path(cfg.ckpt_dir) if cfg.ckpt_dir else None
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)

    def resumable(name: str, module: torch.nn.Module, fn, *args) -> list[float]:
        """Train ``module`` in phase ``name``, or load it when a checkpoint of that phase exists."""
        path = ckpt / f"{name}.pt" if ckpt is not None else None
        if path is not None and path.exists():
            state = torch.load(path, weights_only=False)
            module.load_state_dict(state["state"])
            module.eval()
            print(f"== {name} loaded from {path}", flush=True)
            walls[name] = state["wall_s"]
            return state["losses"]
        losses = phase(name, fn, *args)
        if path is not None:
            torch.save({"state": module.state_dict(), "losses": losses, "wall_s": walls[name]}, path)
        return losses

    data = phase("dataset", make_dataset, cfg)
    tok_path = ckpt / "tokenizer.json" if ckpt is not None else None
    if tok_path is not None and tok_path.exists():
        tokenizer = PromptTokenizer.load(tok_path, cfg.token_len)
    else:
        tokenizer = phase("tokenizer", train_tokenizer, cfg, data)
        if tok_path is not None:
            tokenizer.save(tok_path)
    comps = build_random(cfg.seed, tokenizer)
    clip_losses = resumable("clip", comps.clip, train_clip, cfg, comps, data)
    vae_losses = resumable("vae", comps.vae, train_vae, cfg, comps, data)
    latents, hidden, pooled, scaling = phase("encode", encode_all, comps, data)
    comps.vae_scaling_factor = scaling
    unet_losses = phase(BASE_UNET.name, train_unet, cfg, comps, BASE_UNET.name, cfg.unet_steps, latents, hidden, pooled)
    fast_losses = phase(FAST_UNET.name, train_unet, cfg, comps, FAST_UNET.name, cfg.fast_unet_steps, latents, hidden, pooled)
    meta = {
        "seed": cfg.seed,
        "vae_scaling_factor": scaling,
        "token_len": cfg.token_len,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items() if k != "out_dir"},
        "wall_s": {**walls, "total": round(time.time() - t0, 1)},
        "torch_threads": cfg.num_threads,
        "final_loss": {
            "clip": float(np.mean(clip_losses[-50:])),
            "vae": float(np.mean(vae_losses[-50:])),
            BASE_UNET.name: float(np.mean(unet_losses[-50:])),
            FAST_UNET.name: float(np.mean(fast_losses[-50:])),
        },
    }
    save(cfg, comps, meta)
    return meta


if __name__ == "__main__":
    import sys

    if "--smoke" in sys.argv:
        print(train_embedded(TrainConfig.smoke(Path("/tmp/argus_smoke_weights"))))
    else:
        print(train_embedded(TrainConfig()))
