"""A stand-in cache key for real prompts, until a deployment brings its own CLIP.

The embedded text encoder was trained on world captions and cannot read real language: it puts real
prompts almost all within the K=25 threshold of each other, so a simulated cache keyed on it finds a
near-duplicate for nearly every request. Instead, a real prompt's key is its lexical content: TF-IDF
over word 1-2-grams (scikit-learn), reduced to the profile's embedding width by truncated SVD and
unit-normed. Its similarity to a cached prompt is then mapped, by quantile matching, onto the CLIP
nearest-neighbour similarity distribution of the Argus authors' DiffusionDB log
(``REFERENCE_NN_QUANTILES``, ../shared/data/reuse/README.md), and from that CLIP scale onto the
profile's own thresholds (piecewise linear through NIRVANA's published threshold for each K and the
profile's): a real prompt that NIRVANA would serve at K on the real log's scale clears the profile's
K threshold here. Results on real prompts say so ("lexical stand-in").
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from triton_backend.cache_store import NIRVANA_THRESHOLDS

REFERENCE_NN_QUANTILES = {0: 0.236, 1: 0.503, 5: 0.573, 10: 0.604, 20: 0.643, 25: 0.657, 30: 0.668, 40: 0.690, 50: 0.712, 60: 0.736,
                          70: 0.766, 75: 0.784, 80: 0.807, 90: 0.888, 95: 0.965, 99: 1.0, 100: 1.0}
"""Percentile -> CLIP text similarity of each query's nearest cached prompt, 20,000 DiffusionDB queries."""
LABEL = "lexical stand-in (TF-IDF word 1-2-grams, quantile-mapped onto the DiffusionDB CLIP similarity distribution)"


def lexical_embeddings(prompts: list[str], dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Prompt -> unit (dim,) vector: TF-IDF word 1-2-grams, truncated SVD (exact repeats stay at cosine 1)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    unique = list(dict.fromkeys(prompts))
    x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit_transform(unique)
    k = max(1, min(dim, x.shape[1] - 1, len(unique) - 1))
    dense = TruncatedSVD(k, random_state=seed).fit_transform(x) if k < x.shape[1] else x.toarray()
    out = np.zeros((len(unique), dim), np.float32)
    out[:, : dense.shape[1]] = dense
    for i in np.flatnonzero(np.linalg.norm(out, axis=1) < 1e-9):  # no word TF-IDF knows ("!!!"): a direction of its own
        seed_i = int(hashlib.sha1(unique[i].encode("utf-8", "replace")).hexdigest()[:8], 16)
        out[i] = np.random.default_rng(seed_i).normal(size=dim)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return dict(zip(unique, out))


def nearest_earlier(prompts: list[str], embeddings: dict[str, np.ndarray], warm: int = 0) -> np.ndarray:
    """Each prompt's best cosine with the prompts before it (from index ``max(1, warm)`` on: the requests
    after ``warm`` cached prompts); keys of any kind (lexical stand-in or the deployed encoder's)."""
    x = np.stack([embeddings[p] for p in prompts])
    return np.array([float((x[:i] @ x[i]).max()) for i in range(max(1, warm), len(prompts))])


@dataclasses.dataclass(frozen=True)
class SimilarityMap:
    """Raw lexical cosine -> the profile's similarity scale (monotone, piecewise linear)."""

    raw: np.ndarray
    mapped: np.ndarray

    def __call__(self, similarity: float) -> float:
        if similarity < 0:
            return similarity  # -1: nothing cached
        return float(np.interp(similarity, self.raw, self.mapped))

    @classmethod
    def fit(cls, raw_nearest: np.ndarray, thresholds: dict[int, float]) -> SimilarityMap:
        pct = np.array(sorted(REFERENCE_NN_QUANTILES), np.float64)
        raw = np.quantile(raw_nearest, pct / 100.0)
        clip = np.array([REFERENCE_NN_QUANTILES[int(p)] for p in pct])
        raw, keep = np.unique(np.maximum.accumulate(raw), return_index=True)
        clip = clip[keep]
        raw, clip = np.r_[-1.0, raw, 1.0 + 1e-6], np.r_[clip[0], clip, 1.0]
        # CLIP scale -> the profile's: NIRVANA's published threshold for each K lands on the profile's
        ks = sorted(k for k in thresholds if k in NIRVANA_THRESHOLDS)
        src = np.r_[0.0, [NIRVANA_THRESHOLDS[k] for k in ks], 1.0]
        dst = np.r_[min(0.0, min(thresholds.values()) - 0.1), [thresholds[k] for k in ks], 1.0]
        order = np.argsort(src, kind="stable")
        return cls(raw, np.interp(clip, src[order], np.maximum.accumulate(dst[order])))
