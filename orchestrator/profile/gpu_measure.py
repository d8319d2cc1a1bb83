"""``argus gpu-profile --measure``: time SD-XL's parts on whatever GPU is present, build a profile.

Latency does not depend on the weights, so the parts are diffusers' ``UNet2DConditionModel`` and
``AutoencoderKL`` and transformers' two CLIP text encoders with SD-XL base 1.0's configuration and
random weights (fp16 on a GPU). Each part is timed at batch 1/2/4/8 eagerly and under a CUDA graph
(median of ``repeats`` after ``warmup``, CUDA events), plus the time to load the UNet's weights from
local disk onto the device, which is what a model switch costs. The rows have the same shape as the
reference H100 measurements in ../shared/data/gpu, so ``profile_from_rows`` builds a profile from
either: per variant, (50 - K) UNet steps with guidance + the VAE decode + the text encoders; the fast
model is 4 UNet steps without guidance (an SDXL-Lightning-style distilled UNet).

``PartsConfig.tiny()`` is the same code on a toy configuration, so CI exercises it on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator.profile.schema import Profile, VariantProfile

BATCHES = (1, 2, 4, 8)
FAST_STEPS = 4
"""A few-step distilled SD-XL UNet (SDXL-Lightning) runs 4 steps without guidance."""


@dataclasses.dataclass(frozen=True)
class PartsConfig:
    """The architecture timed: SD-XL base 1.0 by default."""

    resolution_px: int = 1024
    unet: dict = dataclasses.field(default_factory=lambda: dict(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816))
    vae: dict = dataclasses.field(default_factory=lambda: dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024))
    text_l: dict = dataclasses.field(default_factory=lambda: dict(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
        hidden_act="quick_gelu"))
    text_g: dict = dataclasses.field(default_factory=lambda: dict(
        vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, max_position_embeddings=77,
        hidden_act="gelu", projection_dim=1280))
    tokens: int = 77
    time_ids: int = 6

    @property
    def latent_px(self) -> int:
        return self.resolution_px // 8

    @classmethod
    def tiny(cls) -> PartsConfig:
        """A toy of the same shape, for CPU tests of this code path."""
        return cls(
            resolution_px=64,
            unet=dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                      attention_head_dim=8, cross_attention_dim=96, norm_num_groups=16, addition_embed_type="text_time",
                      addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8),
            vae=dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(16, 32), norm_num_groups=16,
                     down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16),
            text_l=dict(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=8),
            text_g=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=8,
                        projection_dim=32),
            tokens=8,
        )


@dataclasses.dataclass(frozen=True)
class MeasureConfig:
    parts: PartsConfig = dataclasses.field(default_factory=PartsConfig)
    device: str = "cuda"
    batches: tuple[int, ...] = BATCHES
    repeats: int = 10
    warmup: int = 3
    cuda_graphs: bool = True
    """Also time under CUDA graphs (GPU only): on a fast GPU, eager small batches are bound by kernel launches."""


def _timer(device: str, repeats: int, warmup: int):
    import torch

    def run(fn) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t = time.perf_counter()
                fn()
                times.append(1000.0 * (time.perf_counter() - t))
        return round(statistics.median(times), 3)

    return run


def _graphed(fn):
    """``fn`` captured into a CUDA graph (static inputs): its replay."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def measure_parts(cfg: MeasureConfig, log=print) -> list[dict]:
    """Timing rows (the shape of ../shared/data/gpu/*.jsonl), plus a header row naming the device."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    p = cfg.parts
    cuda = cfg.device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    dtype_name = "float16" if cuda else "float32"
    timed = _timer(cfg.device, cfg.repeats, cfg.warmup)
    modes = [("eager", False)] + ([("cudagraph", True)] if cuda and cfg.cuda_graphs else [])
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    rows: list[dict] = [{"gpu": name, "torch": torch.__version__, "parts": "sdxl" if p.resolution_px == 1024 else "tiny"}]
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**p.unet).to(cfg.device, dtype).eval()
    rows.append({"what": "unet_params_M", "value": round(sum(x.numel() for x in unet.parameters()) / 1e6, 1)})
    hidden_dim, pooled_dim = p.unet["cross_attention_dim"], p.text_g["projection_dim"]
    with torch.inference_mode():
        for cfg_guidance, tag in ((True, "unet_step"), (False, "unet_step_nocfg")):
            for b in cfg.batches:
                n = 2 * b if cfg_guidance else b  # classifier-free guidance: one image is a UNet batch of 2
                x = torch.randn(n, 4, p.latent_px, p.latent_px, device=cfg.device, dtype=dtype)
                cond = dict(encoder_hidden_states=torch.randn(n, p.tokens, hidden_dim, device=cfg.device, dtype=dtype),
                            added_cond_kwargs={"text_embeds": torch.randn(n, pooled_dim, device=cfg.device, dtype=dtype),
                                               "time_ids": torch.randn(n, p.time_ids, device=cfg.device, dtype=dtype)})
                t = torch.tensor([500] * n, device=cfg.device)
                for mode, graph in modes:
                    fn = lambda x=x, t=t, cond=cond: unet(x, t, **cond)  # noqa: E731
                    ms = timed(_graphed(fn) if graph else fn)
                    rows.append({"what": f"{tag}_{mode}", "dtype": dtype_name, "res": p.resolution_px, "images": b, "unet_batch": n,
                                 "ms_median": ms, "ms_per_image": round(ms / b, 3)})
                    log(f"{tag} {mode} batch {b}: {ms:.1f} ms")
        vae = AutoencoderKL(**p.vae).to(cfg.device, dtype).eval()
        for b in cfg.batches:
            z = torch.randn(b, 4, p.latent_px, p.latent_px, device=cfg.device, dtype=dtype)
            for mode, graph in modes:
                fn = lambda z=z, vae=vae: vae.decode(z)  # noqa: E731
                ms = timed(_graphed(fn) if graph else fn)
                rows.append({"what": f"vae_decode_{mode}", "res": p.resolution_px, "images": b, "ms": ms})
                log(f"vae decode {mode} batch {b}: {ms:.1f} ms")
        del vae
        text_l = CLIPTextModel(CLIPTextConfig(**p.text_l)).to(cfg.device, dtype).eval()
        text_g = CLIPTextModelWithProjection(CLIPTextConfig(**p.text_g)).to(cfg.device, dtype).eval()
        for b in cfg.batches:
            ids = torch.randint(0, p.text_l["vocab_size"], (b, p.tokens), device=cfg.device)
            for mode, graph in modes:
                def both(ids=ids, text_l=text_l, text_g=text_g):
                    text_l(ids, output_hidden_states=True)
                    text_g(ids, output_hidden_states=True)

                ms = timed(_graphed(both) if graph else both)
                rows.append({"what": f"text_encoders_{mode}", "prompts": b, "ms": ms})
                log(f"text encoders {mode} batch {b}: {ms:.1f} ms")
        del text_l, text_g
    rows.append(_measure_unet_load(unet, cfg.device, dtype))
    log(f"unet load: {rows[-1]['total_s']:.2f} s")
    return rows


def _measure_unet_load(unet, device: str, dtype) -> dict:
    """Local disk -> CPU -> device for the UNet's weights (the page cache dropped first where permitted)."""
    import torch
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "unet.safetensors"
        save_file({k: v.detach().to("cpu").contiguous() for k, v in unet.state_dict().items()}, str(path))
        dropped = _drop_page_cache()
        t0 = time.perf_counter()
        state = load_file(str(path))
        t1 = time.perf_counter()
        on_device = {k: v.to(device, dtype) for k, v in state.items()}
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        del on_device
        return {"what": "unet_load", "bytes": path.stat().st_size, "disk_to_cpu_s": round(t1 - t0, 3), "cpu_to_gpu_s": round(t2 - t1, 3),
                "total_s": round(t2 - t0, 3), "page_cache_dropped": dropped}


def _drop_page_cache() -> bool:
    import os

    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def read_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return rows


def _per_batch(rows: list[dict], what: str, count: str, batches: tuple[int, ...]) -> dict[int, float]:
    """Milliseconds per batch size for one part (its largest resolution, fp16 where measured), linear
    between measured sizes and proportional beyond the largest."""
    mine = [r for r in rows if r.get("what") == what]
    if not mine:
        raise ValueError(f"no '{what}' rows in the measurements")
    res = max(r.get("res", 0) for r in mine)
    dtypes = {r.get("dtype") for r in mine}
    dtype = "float16" if "float16" in dtypes else next(iter(dtypes))
    got = {int(r[count]): float(r.get("ms_median", r.get("ms"))) for r in mine if r.get("res", 0) == res and r.get("dtype") == dtype}
    probe = VariantProfile("probe", 0, "", got)
    return {b: probe.batch_latency_ms(b) for b in batches}


def profile_from_rows(rows: list[dict], quality_from: Profile, num_steps: int = 50, mode: str = "cudagraph",
                      batches: tuple[int, ...] = BATCHES, origin: str = "measured here by `argus gpu-profile --measure`") -> Profile:
    """Latency per variant and batch from part timings; quality and thresholds from a measured profile."""
    unet = _per_batch(rows, f"unet_step_{mode}", "images", batches)
    fast = _per_batch(rows, f"unet_step_nocfg_{mode}", "images", batches)
    vae = _per_batch(rows, f"vae_decode_{mode}", "images", batches)
    text = _per_batch(rows, f"text_encoders_{mode}", "prompts", batches)
    load = next(r for r in rows if r.get("what") == "unet_load")["total_s"]
    header = next((r for r in rows if "gpu" in r), {"gpu": "unknown"})
    variants = {}
    for name, vp in quality_from.variants.items():
        if name == "fast":
            lat = {b: FAST_STEPS * fast[b] + vae[b] + text[b] for b in batches}
        else:
            lat = {b: (num_steps - vp.k) * unet[b] + vae[b] + text[b] for b in batches}
        variants[name] = dataclasses.replace(vp, latency_ms={b: round(ms, 1) for b, ms in lat.items()},
                                             load_time_s=round(load, 2) if name == "fast" else 0.0)
    return Profile(variants, quality_from.quality, dict(quality_from.thresholds),
                   source=f"SD-XL parts measured on {header['gpu']} ({mode}; {origin}): {num_steps} steps with guidance per k0 "
                          f"image, {FAST_STEPS} without for the fast model, VAE decode, both text encoders; model switch = UNet weights "
                          f"disk to device. Quality per prompt and variant from the measured tiny-model profile.",
                   ground_truth=quality_from.ground_truth)


def gpu_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100' (the file name's part)."""
    for token in name.lower().replace("-", " ").split():
        if token[:1] in "abhlt" and any(ch.isdigit() for ch in token):
            return token
    return "".join(ch for ch in name.lower() if ch.isalnum())[:16] or "gpu"


def run_gpu_profile(measure: bool, from_measurements: list[Path], device: str, tiny: bool, quality_from: Path, out: Path | None,
                    log=print) -> Path:
    """``argus gpu-profile``: measure here, or build from timing rows, or (neither) write the cited A100 profile.
    A measurement also keeps its rows beside the profile (``<out>.jsonl``)."""
    from orchestrator.paths import PROFILES_DIR

    if not measure and not from_measurements:
        from orchestrator.profile.gpu import write_gpu_profile

        return write_gpu_profile(quality_from, out or PROFILES_DIR / "gpu_sdxl_a100.json")
    if measure:
        rows = measure_parts(MeasureConfig(parts=PartsConfig.tiny() if tiny else PartsConfig(), device=device,
                                           repeats=3 if tiny else 10, warmup=1 if tiny else 3), log=log)
    else:
        rows = read_rows(from_measurements)
    header = next((r for r in rows if "gpu" in r), {"gpu": "unknown"})
    mode = "cudagraph" if any(r.get("what", "").endswith("_cudagraph") for r in rows) else "eager"
    out = out or PROFILES_DIR / f"gpu_sdxl_{gpu_slug(header['gpu'])}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    origin = ("measured here by `argus gpu-profile --measure`" if measure else
              "timing rows " + ", ".join(p.name for p in from_measurements) + ", built by `argus gpu-profile --from-measurements`")
    profile_from_rows(rows, Profile.load(quality_from), mode=mode, origin=origin).save(out)
    if measure:
        out.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
