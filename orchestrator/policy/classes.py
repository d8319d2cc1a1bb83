"""Prompt classes: k-means clusters of prompt embeddings, the planner's unit of prompt awareness."""

from __future__ import annotations

import dataclasses

import numpy as np

NUM_PROMPT_CLASSES = 8
"""Clusters the planner plans for: enough to separate the world's kinds of prompt, few enough
that each class sees tens of requests per plan interval."""


@dataclasses.dataclass
class PromptClasses:
    centroids: np.ndarray  # (C, D) unit norm

    @classmethod
    def fit(cls, embeddings: np.ndarray, k: int = NUM_PROMPT_CLASSES, iters: int = 25, seed: int = 0) -> PromptClasses:
        rng = np.random.default_rng(seed)
        k = min(k, len(embeddings))
        cent = embeddings[rng.choice(len(embeddings), k, replace=False)].copy()
        for _ in range(iters):
            assign = (embeddings @ cent.T).argmax(1)
            for c in range(k):
                members = embeddings[assign == c]
                if len(members):
                    cent[c] = members.mean(0)
            cent /= np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12
        return cls(cent)

    def assign(self, embedding: np.ndarray) -> int:
        return int((self.centroids @ np.asarray(embedding).reshape(-1)).argmax())

    def __len__(self) -> int:
        return len(self.centroids)
