"""Image quality for the embedded world: CLIP score with the tiny CLIP, plus ground truth.

CLIP score is what the system uses for every prompt (as CLIP scores real SD-XL output); the
ground-truth check (``world.ground_truth_check``) exists only for this world's grammar and is
reported beside it to show the CLIP score means something.
"""

from __future__ import annotations

import numpy as np
import torch

from tiny_model.models import load_clip, load_tokenizer
from tiny_model.world import ground_truth_check


class QualityScorer:
    def __init__(self, weights_dir=None):
        self.tokenizer = load_tokenizer(weights_dir)
        self.clip = load_clip(weights_dir, tokenizer=self.tokenizer)

    @torch.inference_mode()
    def image_features(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> unit-norm CLIP image embeddings (N, P)."""
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1  # a copy: inputs may be read-only
        return torch.nn.functional.normalize(self.clip.get_image_features(pixel_values=x).pooler_output, dim=-1)

    @torch.inference_mode()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        ids = torch.from_numpy(self.tokenizer(prompts))
        return torch.nn.functional.normalize(self.clip.get_text_features(input_ids=ids).pooler_output, dim=-1)

    def clip_score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """100 * max(cos(image, prompt), 0) per pair, as the usual CLIP score."""
        sim = (self.image_features(images) * self.text_features(prompts)).sum(-1)
        return (100 * sim.clamp(min=0)).numpy()

    def retrieval_top1(self, images: np.ndarray, prompts: list[str], distractors: list[list[str]]) -> np.ndarray:
        """1 where the image's own prompt scores above all of its distractor captions."""
        img = self.image_features(images)
        hits = []
        for i, (prompt, others) in enumerate(zip(prompts, distractors)):
            txt = self.text_features([prompt] + list(others))
            hits.append(float((txt @ img[i]).argmax().item() == 0))
        return np.array(hits)

    @staticmethod
    def ground_truth(images: np.ndarray, prompts: list[str]) -> list[dict[str, float] | None]:
        return [ground_truth_check(img, p) for img, p in zip(images, prompts)]


class PretrainedClipScorer(QualityScorer):
    """The same scores with any ``transformers`` CLIPModel saved in a local directory (``save_pretrained``:
    the model, its tokenizer and its image processor), so that a real deployment scores real SD-XL
    output with a real CLIP. Images are resized and normalised by the directory's image processor."""

    def __init__(self, path):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.clip = CLIPModel.from_pretrained(str(path)).eval()
        self.hf_tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.processor = AutoImageProcessor.from_pretrained(str(path))
        self.max_length = int(self.clip.config.text_config.max_position_embeddings)

    @torch.inference_mode()
    def image_features(self, images: np.ndarray) -> torch.Tensor:
        pixels = self.processor(images=list(np.asarray(images, dtype=np.uint8)), return_tensors="pt")["pixel_values"]
        return torch.nn.functional.normalize(self.clip.get_image_features(pixel_values=pixels).pooler_output, dim=-1)

    @torch.inference_mode()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        enc = self.hf_tokenizer(list(prompts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        out = self.clip.get_text_features(input_ids=enc["input_ids"], attention_mask=enc.get("attention_mask"))
        return torch.nn.functional.normalize(out.pooler_output, dim=-1)


def load_scorer(path=None) -> QualityScorer:
    """The CLIP scorer: the embedded tiny CLIP (``path`` None), or a transformers CLIPModel directory."""
    if path is None:
        return QualityScorer()
    from pathlib import Path

    if not (Path(path) / "config.json").exists():
        raise ValueError(f"{path}: no config.json; expected a directory written by CLIPModel.save_pretrained (with its tokenizer and image processor)")
    return PretrainedClipScorer(path)


RELATIVE_FLOOR = 0.25
"""A prompt's full-quality score is floored at this fraction of the mean full-quality score before
dividing: a ratio to a near-zero score (a prompt the model fails anyway) means nothing."""
RELATIVE_CAP = 1.5


def relative_quality(score: np.ndarray, base: np.ndarray) -> np.ndarray:
    """q(v)/q(k0) per prompt, with the floor above and capped at RELATIVE_CAP."""
    floor = RELATIVE_FLOOR * float(np.mean(base))
    return np.clip(np.asarray(score, np.float64) / np.maximum(base, max(floor, 1e-6)), 0.0, RELATIVE_CAP)
