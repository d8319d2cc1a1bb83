"""What the simulator knows about a prompt.

``TableWorld`` (the world's own prompt stream): a row of the profile's quality table.

Each prompt maps to a row (stable per prompt text, so reuse in the stream is reuse here): the
row's embedding is what the text encoder would return, its measured similarity per K what the
cache would find, its relative quality per variant the truth that gets scored. A prompt seen
before in the stream finds its own latents (similarity 1, and resuming its own latent reproduces
its k0 image). True relative quality is capped at 1: a measured ratio above 1 is scorer noise.

``TextWorld`` (real prompt sets, a user's prompt file): the prompt's own reuse structure. Each
prompt is embedded with the deployed text encoder (the embedded model's, the one the cache keys on);
its cache similarity is its best cosine with the prompts before it in the stream (1 for an exact
repeat), and its true quality at a K variant is that of the profiled prompt whose measured
similarity at K is nearest. So which real prompts find near-duplicates follows their words; how
much a near-duplicate of that similarity costs still comes from the world's measurements.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from orchestrator.policy.predictor import EXACT_MATCH
from orchestrator.profile.schema import Profile


@dataclasses.dataclass(frozen=True)
class PromptView:
    embedding: np.ndarray
    similarity: dict[str, float]
    """Best cached similarity per K variant (what a cache lookup would return)."""
    truth: dict[str, float]
    """True relative quality per variant."""


class TableWorld:
    def __init__(self, profile: Profile):
        self.profile = profile
        self.seen: set[str] = set()

    def row(self, prompt: str) -> int:
        return int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16) % len(self.profile.quality.prompts)

    def observe(self, prompt: str) -> PromptView:
        """The prompt's view at its arrival; later arrivals of the same text are repeats."""
        table = self.profile.quality
        row = self.row(prompt)
        repeat = prompt in self.seen
        self.seen.add(prompt)
        sims, truth = {}, {"k0": 1.0}
        for v, vp in self.profile.variants.items():
            if v == "k0":
                continue
            if vp.needs_cache:
                sims[v] = 1.0 if repeat else float(table.similarity[v][row])
                truth[v] = self.cached_truth(v, sims[v], row)
            else:
                truth[v] = min(1.0, float(table.relative_quality[v][row]))
        return PromptView(table.embeddings[row], sims, truth)

    def cached_truth(self, variant: str, similarity: float, row: int) -> float:
        """True quality of a K variant resumed from a latent of this similarity, as measured on ``row``.
        The same prompt's latent (an exact match: a repeat, or a profiled neighbour with the same text)
        gives a full-quality image of it; the profile's ratio there is the scorer's seed noise, capped."""
        if similarity >= EXACT_MATCH:
            return 1.0
        return min(1.0, float(self.profile.quality.relative_quality[variant][row]))


class TextWorld(TableWorld):
    def __init__(self, profile: Profile, embeddings: dict[str, np.ndarray], warm: tuple[str, ...] = ()):
        """``warm``: prompts cached before the stream (each in ``embeddings``): the stream finds them
        as it finds its own earlier prompts, and the same text as an exact match."""
        super().__init__(profile)
        self.embeddings = embeddings
        """Prompt -> unit-norm pooled text embedding (``embed_prompts``), shared by every run on the stream."""
        self.cache = np.zeros((len(embeddings), next(iter(embeddings.values())).shape[0]), np.float32)
        """The distinct prompts seen so far, in their first ``cached`` rows (each prompt is cached once)."""
        self.cached = 0
        table = profile.quality
        self.by_similarity = {}
        for v, vp in profile.variants.items():
            if vp.needs_cache:
                order = np.argsort(table.similarity[v])
                self.by_similarity[v] = (table.similarity[v][order], order)
        for prompt in warm:
            self._remember(prompt)

    def _remember(self, prompt: str) -> None:
        """Cache a prompt's latents (once per distinct text): later arrivals can resume from them."""
        if prompt not in self.seen:
            self.seen.add(prompt)
            self.cache[self.cached] = self.embeddings[prompt]
            self.cached += 1

    def _nearest_row(self, v: str, similarity: float) -> int:
        sims, order = self.by_similarity[v]
        i = int(np.clip(np.searchsorted(sims, similarity), 1, len(sims) - 1))
        return int(order[i - 1] if similarity - sims[i - 1] <= sims[i] - similarity else order[i])

    def observe(self, prompt: str) -> PromptView:
        table = self.profile.quality
        emb = self.embeddings[prompt]
        repeat = prompt in self.seen
        best = 1.0 if repeat else (float((self.cache[: self.cached] @ emb).max()) if self.cached else -1.0)
        self._remember(prompt)
        sims, truth = {}, {"k0": 1.0}
        for v, vp in self.profile.variants.items():
            if v == "k0":
                continue
            if vp.needs_cache:
                sims[v] = best
                truth[v] = self.cached_truth(v, best, self._nearest_row(v, best))
            else:
                truth[v] = min(1.0, float(table.relative_quality[v][self.row(prompt)]))
        return PromptView(emb, sims, truth)


def embed_prompts(prompts: list[str], batch: int = 256) -> dict[str, np.ndarray]:
    """Unit-norm pooled embeddings of the distinct prompts with the deployed (embedded) text encoder, in-process."""
    import torch

    from tiny_model.models import load_clip, load_tokenizer
    from tiny_model.pipeline import encode_prompts

    tokenizer = load_tokenizer()
    clip = load_clip(tokenizer=tokenizer)
    unique = list(dict.fromkeys(prompts))
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for i in range(0, len(unique), batch):
            chunk = unique[i : i + batch]
            pooled = encode_prompts(clip, tokenizer, chunk)[1].numpy().astype(np.float32)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True) + 1e-12
            out.update(zip(chunk, pooled))
    return out
