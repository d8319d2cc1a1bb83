"""The text-to-image pipeline as small named phases, shared by Triton models, training and benchmarks.

The phases are exactly the Triton models' jobs: ``encode`` (text_encoder), ``denoise`` (the
denoiser's scheduler loop, which calls a UNet step function: in-process here, a BLS call to the
``unet`` model inside Triton), and ``decode`` (vae_decoder). Keeping one implementation means the
in-process benchmark and the served pipeline compute the same thing.

Step-skip semantics: the latent "at step K" is the input of denoising step K of the full
schedule. A generation at level K starts from such a latent (another prompt's, from the cache)
and runs steps K..N-1, i.e. N-K UNet evaluations.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from tiny_model.models import LATENT_CHANNELS, LATENT_SIZE, Components, default_time_ids, scheduler_kwargs

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(sample, timestep[B], encoder_hidden_states, text_embeds, time_ids) -> noise prediction."""


def make_scheduler(num_inference_steps: int):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**scheduler_kwargs())
    sched.set_timesteps(num_inference_steps)
    return sched


def initial_noise(seeds: np.ndarray | list[int], shape: tuple[int, ...] = (LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)) -> torch.Tensor:
    """Per-request noise from its own seed, so a result never depends on batch composition."""
    out = []
    for seed in np.asarray(seeds).reshape(-1):
        g = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
        out.append(torch.randn(tuple(shape), generator=g))
    return torch.stack(out)


@torch.inference_mode()
def encode_prompts(clip, tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (CLIP hidden states (N, L, D), pooled projected embeddings (N, P))."""
    out = clip.text_model(input_ids=torch.from_numpy(tokenizer(prompts)))
    return out.last_hidden_state, clip.text_projection(out.pooler_output)


def denoise(
    latents: torch.Tensor,
    hidden: torch.Tensor,
    pooled: torch.Tensor,
    uncond_hidden: torch.Tensor,
    uncond_pooled: torch.Tensor,
    step_fn: StepFn,
    *,
    k: int,
    num_inference_steps: int,
    guidance_scale: float,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    time_ids: np.ndarray | None = None,
) -> torch.Tensor:
    """Run steps k..N-1 of the DDIM schedule with classifier-free guidance.

    ``on_step(i, latents)`` sees the latent at the start of step i (what the cache stores for level i).
    Cond and uncond run as one UNet batch of 2B, as SD-XL pipelines do.
    """
    if not 0 <= k < num_inference_steps:
        raise ValueError(f"step-skip level k={k} must be in [0, {num_inference_steps})")
    sched = make_scheduler(num_inference_steps)
    b = latents.shape[0]
    time_ids = torch.from_numpy(default_time_ids() if time_ids is None else np.asarray(time_ids, np.float32)).expand(2 * b, -1).contiguous()
    hid = torch.cat([uncond_hidden.expand(b, -1, -1), hidden])
    pool = torch.cat([uncond_pooled.expand(b, -1), pooled])
    for i, t in enumerate(sched.timesteps[k:], start=k):
        if is_cancelled is not None and is_cancelled():
            raise InterruptedError(f"cancelled at step {i}")
        if on_step is not None:
            on_step(i, latents)
        x = torch.cat([latents, latents])
        eps = step_fn(x, t.expand(2 * b).to(torch.float32), hid, pool, time_ids)
        eps_u, eps_c = eps.chunk(2)
        eps = eps_u + guidance_scale * (eps_c - eps_u)
        latents = sched.step(eps, t, latents).prev_sample
    return latents


class TinyPipeline:
    """The whole pipeline in-process (no Triton): the reference the served path is compared with."""

    def __init__(self, comps: Components, guidance_scale: float = 3.0):
        self.c = comps
        self.guidance_scale = guidance_scale
        self._uncond = self.encode([""])

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_prompts(self.c.clip, self.c.tokenizer, prompts)

    def unet_step_fn(self, name: str = "unet") -> StepFn:
        unet = self.c.unets[name]

        def step(x, t, hid, pool, time_ids):
            return unet(x, t, encoder_hidden_states=hid, added_cond_kwargs={"text_embeds": pool, "time_ids": time_ids}).sample

        return step

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents -> uint8 RGB images (N, H, W, 3)."""
        x = self.c.vae.decode(latents / self.c.vae_scaling_factor).sample
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().numpy()

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        *,
        k: int = 0,
        start_latents: torch.Tensor | None = None,
        unet: str = "unet",
        num_inference_steps: int = 50,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
    ) -> np.ndarray:
        if k > 0 and start_latents is None:
            raise ValueError(f"k={k} needs start_latents (the cached latent at step {k})")
        hidden, pooled = self.encode(prompts)
        latents = initial_noise(seeds) if k == 0 else start_latents
        latents = denoise(
            latents,
            hidden,
            pooled,
            *self._uncond,
            self.unet_step_fn(unet),
            k=k,
            num_inference_steps=num_inference_steps,
            guidance_scale=self.guidance_scale,
            on_step=on_step,
        )
        return self.decode(latents)
