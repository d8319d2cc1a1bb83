"""The embedded tiny SD-XL-architecture model: configs, tokenizer, and loading.

Components mirror SD-XL so that real SD-XL drops into the same code paths:
a CLIP text tower (hidden states + pooled projection), an ``AutoencoderKL`` and a
``UNet2DConditionModel`` with ``addition_embed_type="text_time"`` (pooled text embeds plus
the six SD-XL time ids). A second, smaller UNet is the "fast model".

When trained weights are present in ``weights/`` they are loaded; otherwise every component
is randomly initialised from a fixed seed, so serving works (with noise images) before training.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TOKEN_LEN = 32
"""Token positions the text encoder reads (<bos> ... <eos>, padded): covers the world grammar's longest
caption (29 tokens), so no caption is cut. The seed recipe (stage 0) trained with 24; stage 2
(``tiny_model.stages``) extended it. ``meta.json``'s ``token_len`` says which a weights directory has."""
SEED_TOKEN_LEN = 24
TEXT_DIM = 64
POOLED_DIM = 64
TIME_IDS_DIM = 6
LATENT_CHANNELS = 4
LATENT_SIZE = 8
IMAGE_SIZE = 32
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


@dataclasses.dataclass(frozen=True)
class UNetSpec:
    """One denoiser of the family; ``num_inference_steps`` is its full (K=0) schedule length."""

    name: str
    block_out_channels: tuple[int, ...]
    num_inference_steps: int


BASE_UNET = UNetSpec("unet", (64, 128), 50)
FAST_UNET = UNetSpec("unet_fast", (32, 64), 20)


def clip_config(vocab_size: int, token_len: int = TOKEN_LEN, eos_token_id: int = 2):
    """``eos_token_id`` 2 keeps transformers' legacy pooling (at the highest token id, which is
    how stage 0 was trained); any other id pools at the first ``<eos>``, as real CLIP does."""
    from transformers import CLIPConfig

    text = dict(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=4 * TEXT_DIM,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=token_len,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=eos_token_id,
    )
    vision = dict(image_size=IMAGE_SIZE, patch_size=4, hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, num_channels=3)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=POOLED_DIM)


def vae_kwargs() -> dict:
    """AutoencoderKL with 3 blocks: 32x32 RGB <-> 4x8x8 latents (downsample factor 4)."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def unet_kwargs(spec: UNetSpec) -> dict:
    """SD-XL-style conditioning: cross-attention on text hidden states, text_time added embedding."""
    time_embed_dim = 8
    return dict(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=spec.block_out_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=16,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=POOLED_DIM + TIME_IDS_DIM * time_embed_dim,
    )


def scheduler_kwargs() -> dict:
    """SD-XL's noise schedule (scaled-linear betas, 1000 training steps, 'leading' spacing)."""
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


def default_time_ids() -> np.ndarray:
    """SD-XL micro-conditioning: (orig_h, orig_w, crop_top, crop_left, target_h, target_w)."""
    return np.array([IMAGE_SIZE, IMAGE_SIZE, 0, 0, IMAGE_SIZE, IMAGE_SIZE], dtype=np.float32)


class PromptTokenizer:
    """A BPE tokenizer (``tokenizers``) padded/truncated to ``token_len`` with <bos> ... <eos>."""

    def __init__(self, tokenizer, token_len: int = TOKEN_LEN):
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.token_len = token_len

    def with_token_len(self, token_len: int) -> PromptTokenizer:
        return PromptTokenizer(self._tok, token_len)

    def special_id(self, token: str) -> int:
        return int(self._tok.token_to_id(token))

    @property
    def eos_id(self) -> int:
        return self.special_id("<eos>")

    def with_swapped_ids(self, a: str, b: str) -> PromptTokenizer:
        """The same tokenizer with the ids of tokens ``a`` and ``b`` exchanged (merges are by string,
        so segmentation is unchanged; the embedding rows must be exchanged to match)."""
        from tokenizers import Tokenizer

        spec = json.loads(self._tok.to_str())
        vocab = spec["model"]["vocab"]
        vocab[a], vocab[b] = vocab[b], vocab[a]
        for t in spec.get("added_tokens", []):
            if t["content"] in (a, b):
                t["id"] = vocab[t["content"]]
        return PromptTokenizer(Tokenizer.from_str(json.dumps(spec)), self.token_len)

    def count(self, prompt: str) -> int:
        """Tokens of ``prompt`` with <bos> and <eos>, before any truncation."""
        return len(self._tok.encode(prompt).ids) + 2

    @classmethod
    def train(cls, texts: list[str], vocab_size: int = 2048) -> PromptTokenizer:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path, token_len: int = TOKEN_LEN) -> PromptTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), token_len)

    def save(self, path: Path) -> None:
        self._tok.save(str(path))

    def __call__(self, prompts: list[str]) -> np.ndarray:
        """Token ids (N, token_len) int64; every prompt, however long or odd, tokenizes."""
        out = np.zeros((len(prompts), self.token_len), dtype=np.int64)
        for i, enc in enumerate(self._tok.encode_batch(list(prompts))):
            ids = [self.special_id("<bos>")] + enc.ids[: self.token_len - 2] + [self.eos_id]
            out[i, : len(ids)] = ids
        return out


@dataclasses.dataclass
class Components:
    tokenizer: PromptTokenizer
    clip: torch.nn.Module  # transformers CLIPModel; .text_model + .text_projection is the text encoder
    vae: torch.nn.Module
    unets: dict[str, torch.nn.Module]
    vae_scaling_factor: float
    trained: bool


def _fallback_tokenizer() -> PromptTokenizer:
    from tiny_model.world import all_captions_sample

    return PromptTokenizer.train(all_captions_sample(2000, seed=0), vocab_size=512)


def _meta(weights_dir: Path) -> dict | None:
    path = Path(weights_dir) / "meta.json"
    return json.loads(path.read_text()) if path.exists() else None


def weights_token_len(weights_dir: Path | None = None) -> int:
    """The text encoder's token positions in a weights directory (24 before stage 2 recorded it)."""
    meta = _meta(Path(weights_dir or WEIGHTS_DIR))
    return int(meta.get("token_len", SEED_TOKEN_LEN)) if meta else TOKEN_LEN


def _load_into(module: torch.nn.Module, path: Path) -> bool:
    from safetensors.torch import load_file

    if not path.exists():
        return False
    module.load_state_dict(load_file(path))
    return True


def load_tokenizer(weights_dir: Path | None = None) -> PromptTokenizer:
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    if _meta(weights_dir) is None:
        return _fallback_tokenizer()
    return PromptTokenizer.load(weights_dir / "tokenizer.json", weights_token_len(weights_dir))


# Each component is seeded on its own, so loading one never changes another's random init.
def load_clip(weights_dir: Path | None = None, seed: int = 0, tokenizer: PromptTokenizer | None = None):
    from transformers import CLIPModel

    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    tokenizer = tokenizer or load_tokenizer(weights_dir)
    torch.manual_seed(seed)
    clip = CLIPModel(clip_config(tokenizer.vocab_size, tokenizer.token_len, tokenizer.eos_id))
    if _meta(weights_dir) is not None:
        _load_into(clip, weights_dir / "clip.safetensors")
    return clip.eval()


def load_vae(weights_dir: Path | None = None, seed: int = 0) -> tuple[torch.nn.Module, float]:
    """The VAE and its latent scaling factor (1.0 for the random model)."""
    from diffusers import AutoencoderKL

    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**vae_kwargs())
    meta = _meta(weights_dir)
    if meta is not None:
        _load_into(vae, weights_dir / "vae.safetensors")
    return vae.eval(), float(meta["vae_scaling_factor"]) if meta else 1.0


def load_unet(spec: UNetSpec, weights_dir: Path | None = None, seed: int = 0):
    from diffusers import UNet2DConditionModel

    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    torch.manual_seed(seed + 2 + len(spec.name))
    unet = UNet2DConditionModel(**unet_kwargs(spec))
    if _meta(weights_dir) is not None:
        _load_into(unet, weights_dir / f"{spec.name}.safetensors")
    return unet.eval()


UNET_SPECS = {s.name: s for s in (BASE_UNET, FAST_UNET)}


def build_random(seed: int = 0, tokenizer: PromptTokenizer | None = None) -> Components:
    """Randomly initialised components from a fixed seed (no download, fully deterministic)."""
    return load_components(Path("/nonexistent"), seed, tokenizer)


def load_components(weights_dir: Path | None = None, seed: int = 0, tokenizer: PromptTokenizer | None = None) -> Components:
    """Trained weights from ``weights_dir`` when present, else the seeded random model."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    tokenizer = tokenizer or load_tokenizer(weights_dir)
    vae, scaling = load_vae(weights_dir, seed)
    unets = {name: load_unet(spec, weights_dir, seed) for name, spec in UNET_SPECS.items()}
    return Components(tokenizer, load_clip(weights_dir, seed, tokenizer), vae, unets, scaling, trained=_meta(weights_dir) is not None)
