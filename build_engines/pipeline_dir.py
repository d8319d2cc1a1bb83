"""A diffusers SD-XL pipeline directory: write the embedded model in that format, and load one.

SD-XL's layout: ``unet/``, ``vae/``, ``text_encoder/`` (CLIPTextModel, penultimate hidden states),
``text_encoder_2/`` (CLIPTextModelWithProjection: penultimate hidden states + pooled text_embeds),
``tokenizer/``, ``tokenizer_2/``, ``scheduler/``, ``model_index.json``. The embedded model has one
text tower, so like the SD-XL refiner it ships only ``text_encoder_2``; its hidden states are the
last layer's (``argus.json`` says so), and its fast UNet rides along as ``unet_fast/``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

ARGUS_META = "argus.json"


@dataclasses.dataclass
class TextTower:
    name: str
    """Subfolder: text_encoder or text_encoder_2."""
    model: torch.nn.Module
    tokenizer_json: str
    """A ``tokenizers`` JSON (fast tokenizer), the same format for both model kinds."""
    pooled: bool
    """Has a projection whose text_embeds are the pooled embedding (text_encoder_2)."""


@dataclasses.dataclass
class PipelineParts:
    towers: list[TextTower]
    unet: torch.nn.Module
    vae: torch.nn.Module
    vae_scaling_factor: float
    extra_unets: dict[str, torch.nn.Module]
    token_len: int
    hidden_layer: str
    """'penultimate' (SD-XL) or 'last' (the embedded model)."""
    special_ids: dict[str, int]
    """bos/eos/pad ids; 'manual_special' 1 when bos/eos are added by us rather than the tokenizer."""
    image_size: int
    scheduler_config: dict

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c = self.unet.config
        return (c.in_channels, c.sample_size, c.sample_size)

    @property
    def hidden_dim(self) -> int:
        return sum(t.model.config.hidden_size for t in self.towers)

    @property
    def pooled_dim(self) -> int:
        return next(t.model.config.projection_dim for t in self.towers if t.pooled)


def save_embedded(out_dir: Path, weights_dir: Path | None = None) -> Path:
    """The embedded tiny model as an SD-XL-format diffusers directory."""
    from transformers import CLIPTextModelWithProjection

    from tiny_model.models import IMAGE_SIZE, UNET_SPECS, load_clip, load_tokenizer, load_unet, load_vae, scheduler_kwargs

    out_dir = Path(out_dir)
    tok = load_tokenizer(weights_dir)
    clip = load_clip(weights_dir, tokenizer=tok)
    text = CLIPTextModelWithProjection(clip.config.text_config.__class__(**{**clip.config.text_config.to_dict(),
                                                                            "projection_dim": clip.config.projection_dim}))
    state = {k: v for k, v in clip.state_dict().items() if k.startswith(("text_model.", "text_projection."))}
    text.load_state_dict(state)
    text.save_pretrained(out_dir / "text_encoder_2")
    (out_dir / "tokenizer_2").mkdir(parents=True, exist_ok=True)
    tok.save(out_dir / "tokenizer_2" / "tokenizer.json")
    vae, scaling = load_vae(weights_dir)
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(out_dir / "vae")
    for name, spec in UNET_SPECS.items():
        load_unet(spec, weights_dir).save_pretrained(out_dir / name)
    (out_dir / "scheduler").mkdir(exist_ok=True)
    (out_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler", **scheduler_kwargs()}, indent=2))
    index = {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1", "text_encoder": [None, None], "tokenizer": [None, None],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer_2": ["transformers", "PreTrainedTokenizerFast"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"],
             "force_zeros_for_empty_prompt": False}
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2))
    specials = {"bos": tok.special_id("<bos>"), "eos": tok.eos_id, "pad": tok.special_id("<pad>"), "manual_special": 1}
    meta = {"hidden_layer": "last", "token_len": tok.token_len, "image_size": IMAGE_SIZE, "special_ids": specials,
            "extra_unets": [n for n in UNET_SPECS if n != "unet"]}
    (out_dir / ARGUS_META).write_text(json.dumps(meta, indent=2))
    return out_dir


def _tokenizer_json(model_dir: Path, sub: str) -> tuple[str, dict[str, int]]:
    """A tokenizers JSON for a tokenizer subfolder (ours, or SD-XL's CLIPTokenizer converted)."""
    path = model_dir / sub / "tokenizer.json"
    if path.exists() and not (model_dir / sub / "vocab.json").exists():
        return path.read_text(encoding="utf-8"), {}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir / sub, use_fast=True)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return tok.backend_tokenizer.to_str(), {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": pad, "manual_special": 0}


def load(model_dir: Path) -> PipelineParts:
    """Load an SD-XL-format directory (real SD-XL or ``save_embedded``'s output) in fp32 on CPU."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a diffusers pipeline directory (no model_index.json)")
    meta = json.loads((model_dir / ARGUS_META).read_text()) if (model_dir / ARGUS_META).exists() else {}
    towers, special = [], dict(meta.get("special_ids", {}))
    for sub, tok_sub, cls, pooled in (("text_encoder", "tokenizer", CLIPTextModel, False),
                                      ("text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection, True)):
        if (model_dir / sub / "config.json").exists():
            tok_json, ids = _tokenizer_json(model_dir, tok_sub)
            special = special or ids
            towers.append(TextTower(sub, cls.from_pretrained(model_dir / sub).eval(), tok_json, pooled))
    if not any(t.pooled for t in towers):
        raise ValueError(f"{model_dir}: SD-XL needs text_encoder_2 (the pooled text embedding)")
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet").eval()
    vae = AutoencoderKL.from_pretrained(model_dir / "vae").eval()
    extra = {n: UNet2DConditionModel.from_pretrained(model_dir / n).eval() for n in meta.get("extra_unets", [])}
    sched = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
    token_len = meta.get("token_len") or towers[0].model.config.max_position_embeddings
    image = meta.get("image_size") or unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    return PipelineParts(towers, unet, vae, float(vae.config.scaling_factor), extra, int(token_len), meta.get("hidden_layer", "penultimate"),
                         special, int(image), sched)
