"""What the simulator knows about a prompt: a row of the profile's quality table.

Each prompt maps to a row (stable per prompt text, so reuse in the stream is reuse here): the
row's embedding is what the text encoder would return, its measured similarity per K what the
cache would find, its relative quality per variant the truth that gets scored. A prompt seen
before in the stream finds its own latents (similarity 1, and resuming its own latent reproduces
its k0 image). True relative quality is capped at 1: a measured ratio above 1 is scorer noise.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

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
                truth[v] = 1.0 if repeat else min(1.0, float(table.relative_quality[v][row]))
            else:
                truth[v] = min(1.0, float(table.relative_quality[v][row]))
        return PromptView(table.embeddings[row], sims, truth)
