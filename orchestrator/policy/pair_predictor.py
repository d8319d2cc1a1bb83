"""Pair quality predictor: how good is prompt t's image when resumed at step K from the cached
latent of source prompt s, and how good is the fast model's image of t.

The per-prompt predictor (``predictor.QualityPredictor``) sees t and a similarity number; it
cannot tell "a red circle on a blue background" reused for "... on a yellow background" (the
background is lost at any K) from the same latent reused for "a green circle on a blue
background" (perhaps only the colour, and only at large K). This one sees both prompts:
features [e_t, e_s, e_t - e_s, e_t * e_s, similarity, K / steps] for step skipping, [e_t] for the
fast model, each into a small MLP (scikit-learn), trained on ground-truth triples
(``tiny_model.pair_data``). Prediction is a numpy forward pass of the fitted weights: microseconds
for a request's candidates, inside the router's budget.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from orchestrator.policy.predictor import APPROX_CAP, EXACT_MATCH

STEPS = 50.0
"""K is fed as a fraction of the base model's denoising steps."""
SCALE_FLOOR = 0.1
"""Least spread a feature is standardised by (a unit 64-d embedding's coordinates spread about 0.12)."""


def pair_features(target: np.ndarray, sources: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(n, 4D + 2) features of n (target, source, K) triples; ``target`` (D,) or (n, D)."""
    s = np.atleast_2d(sources).astype(np.float32)
    t = np.broadcast_to(np.atleast_2d(target).astype(np.float32), s.shape)
    sim = np.sum(t * s, axis=1, keepdims=True)
    kk = (np.asarray(k, np.float32).reshape(-1, 1) * np.ones((len(s), 1), np.float32)) / STEPS
    return np.hstack([t, s, t - s, t * s, sim, kk])


@dataclasses.dataclass
class _MLP:
    """A fitted scikit-learn MLPRegressor reduced to its arrays (standardised inputs, ReLU hidden layers)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], alpha: float, seed: int) -> _MLP:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        # A floor under each feature's spread: a direction almost constant in training (a held-out template's
        # own words) must not be blown up into an extrapolation at test time.
        mean, scale = x.mean(0), np.maximum(x.std(0), SCALE_FLOOR)
        m = MLPRegressor(hidden_layer_sizes=hidden, alpha=alpha, max_iter=400, early_stopping=len(y) >= 50, validation_fraction=0.15,
                         n_iter_no_change=25, random_state=seed)
        with warnings.catch_warnings():  # max_iter is the budget; early stopping usually ends it first
            warnings.simplefilter("ignore", ConvergenceWarning)
            m.fit((x - mean) / scale, y)
        return cls(mean.astype(np.float32), scale.astype(np.float32), [w.astype(np.float32) for w in m.coefs_],
                   [b.astype(np.float32) for b in m.intercepts_])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = (x - self.mean) / self.scale
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        return (h @ self.weights[-1] + self.biases[-1]).ravel()


@dataclasses.dataclass
class PairQualityPredictor:
    step: _MLP
    fast: _MLP

    @classmethod
    def fit(cls, pairs, triples: np.ndarray | None = None, fast_rows: np.ndarray | None = None, hidden: tuple[int, ...] = (64,),
            alpha: float = 1.0, seed: int = 0) -> PairQualityPredictor:
        """Fit on a ``tiny_model.pair_data.PairTable`` (optionally only the given triple and fast-pair rows).
        Strong weight decay: what must generalise is "what differs costs this much", to templates never
        seen; weaker decay fits the training templates' prompts (held-out MAE 0.23 of the mean's at
        alpha 1 against 0.53 at 0.01 on the synthetic triples of tests/unit/test_pair_predictor.py)."""
        t = np.arange(len(pairs.target)) if triples is None else triples
        f = np.arange(len(pairs.fast_prompt)) if fast_rows is None else fast_rows
        e = pairs.embeddings
        step = _MLP.fit(pair_features(e[pairs.target[t]], e[pairs.source[t]], pairs.k[t]), pairs.relative_quality[t], hidden, alpha, seed)
        fast = _MLP.fit(e[pairs.fast_prompt[f]], pairs.fast_quality[f], hidden, alpha, seed)
        return cls(step, fast)

    def predict_step(self, target: np.ndarray, sources: np.ndarray, k) -> np.ndarray:
        """Relative quality of resuming ``target`` from each source's latent at K. The prompt's own
        latent (an exact match) resumes its own trajectory: full quality."""
        x = pair_features(target, sources, k)
        q = np.clip(self.step(x), 0.0, APPROX_CAP)
        return np.where(x[:, -2] >= EXACT_MATCH, 1.0, q)

    def predict_fast(self, target: np.ndarray) -> float:
        return float(np.clip(self.fast(np.atleast_2d(target).astype(np.float32)), 0.0, APPROX_CAP)[0])


@dataclasses.dataclass(frozen=True)
class SourceCandidates:
    """The cache's sources per K variant for one prompt (``t2i_probe``'s CANDIDATE_* outputs)."""

    ids: dict[str, np.ndarray]
    """Variant -> (C,) entry ids, most similar first; -1 pads."""
    similarity: dict[str, np.ndarray]
    """Variant -> (C,) their cosine similarity with the prompt."""
    embeddings: dict[str, np.ndarray]
    """Variant -> (C, D) the prompt embeddings they were stored under."""


@dataclasses.dataclass(frozen=True)
class RankedSources:
    """Per K variant, the source to resume from: its entry id, similarity and predicted quality."""

    entry: dict[str, int]
    similarity: dict[str, float]
    quality: dict[str, float]


def rank_sources(pair: PairQualityPredictor, embedding: np.ndarray, cands: SourceCandidates, thresholds: dict[str, float],
                 steps: dict[str, int]) -> RankedSources:
    """For each K variant, the candidate with the highest predicted quality among those that clear
    K's similarity threshold (NIRVANA-style thresholds still bound how far a source may be): a less
    similar latent may suit the prompt better, e.g. one that differs in colour rather than background.
    Ties go to the more similar. A variant with no candidate over its threshold keeps the most similar
    (and is not on offer, as before)."""
    entry, sim, quality = {}, {}, {}
    for v, ids in cands.ids.items():
        ok = np.flatnonzero((ids >= 0) & (cands.similarity[v] >= thresholds[v]))
        if len(ok) == 0:
            entry[v], sim[v] = int(ids[0]), float(cands.similarity[v][0])
            continue
        q = pair.predict_step(embedding, cands.embeddings[v][ok], steps[v])
        best = int(ok[int(np.argmax(q))])  # argmax takes the first (most similar) of equals
        entry[v], sim[v], quality[v] = int(ids[best]), float(cands.similarity[v][best]), float(q.max())
    return RankedSources(entry, sim, quality)
