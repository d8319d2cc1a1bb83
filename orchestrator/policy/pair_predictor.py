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
QUALITY_FLOOR = 0.915
"""The relative quality a reuse must keep: SD-XL's mean at K=25 of 50 in the Argus authors' artifact
(../shared/data/reuse/README.md: 97.1 / 95.8 / 94.4 / 93.2 / 91.5% for K = 5..25), the least a NIRVANA
hit keeps on real traffic. The simulator's thresholds are calibrated to it
(``orchestrator.sim.ground_truth.calibrate_thresholds``); argus offers a source past the threshold
when it predicts that source keeps it (``rank_sources``)."""
OFFER_FLOOR = 0.8
"""The predicted quality from which argus offers a K variant whose best source is below K's
similarity threshold (``rank_sources``); what it then serves is the expected-utility rule's choice.
At ``QUALITY_FLOOR``, with the predictor trained on the probe's own candidates (calibrated: served
K=25 answers no longer over-rated), too few cheap answers were on offer when the trace's peak burst
began, and argus shed there: 1.5% late at 3x against 0.5% at 0.8 (seeds 0-2; 2x quality 0.969
against 0.966). 0.7 and 0 gave the same at 3x and a violation at 2x."""
SCALE_FLOOR = 0.1
"""Least spread a feature is standardised by (a unit 64-d embedding's coordinates spread about 0.12)."""


def pair_features(target: np.ndarray, sources: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(n, 4D + 2) features of n (target, source, K) triples; ``target`` (D,) or (n, D): what differs
    (|e_t - e_s| and its sign), what is shared (e_t * e_s), the prompt itself, the similarity and K.
    The prompt's own coordinates stand in for its kind; the source's raw coordinates are left out
    (with them, held-out templates scored worse than the variant's mean: MAE ratio 1.53)."""
    s = np.atleast_2d(sources).astype(np.float32)
    t = np.broadcast_to(np.atleast_2d(target).astype(np.float32), s.shape)
    d = t - s
    sim = np.sum(t * s, axis=1, keepdims=True)
    kk = (np.asarray(k, np.float32).reshape(-1, 1) * np.ones((len(s), 1), np.float32)) / STEPS
    return np.hstack([np.abs(d), d, t * s, t, sim, kk])


@dataclasses.dataclass(frozen=True)
class PairRows:
    """Training rows as embeddings: (target, source, K) -> relative quality, and prompt -> the fast
    model's. Measured rows come from a ``PairTable``; a world that knows what differs between two
    captions adds rows labelled with its measured cell means (``orchestrator.sim.ground_truth.cell_rows``)."""

    target: np.ndarray
    source: np.ndarray
    k: np.ndarray
    quality: np.ndarray
    fast_target: np.ndarray
    fast_quality: np.ndarray

    @classmethod
    def of(cls, pairs, triples: np.ndarray | None = None, fast_rows: np.ndarray | None = None) -> PairRows:
        t = np.arange(len(pairs.target)) if triples is None else triples
        f = np.arange(len(pairs.fast_prompt)) if fast_rows is None else fast_rows
        e = pairs.embeddings
        return cls(e[pairs.target[t]], e[pairs.source[t]], pairs.k[t], pairs.relative_quality[t], e[pairs.fast_prompt[f]], pairs.fast_quality[f])

    def __add__(self, other: PairRows) -> PairRows:
        return PairRows(*(np.concatenate([a, b]) for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


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
            alpha: float = 1.0, seed: int = 0, extra: PairRows | None = None) -> PairQualityPredictor:
        """Fit on a ``PairTable`` (optionally only the given triple and fast-pair rows) plus ``extra`` rows.
        Strong weight decay: what must generalise is "what differs costs this much", to templates never
        seen; weaker decay fits the training templates' prompts (held-out MAE 0.23 of the mean's at
        alpha 1 against 0.53 at 0.01 on the synthetic triples of tests/unit/test_pair_predictor.py)."""
        rows = PairRows.of(pairs, triples, fast_rows)
        rows = rows + extra if extra is not None else rows
        step = _MLP.fit(pair_features(rows.target, rows.source, rows.k), rows.quality, hidden, alpha, seed)
        fast = _MLP.fit(rows.fast_target, rows.fast_quality, hidden, alpha, seed)
        return cls(step, fast)

    def save(self, path) -> None:
        arrays = {}
        for name, m in (("step", self.step), ("fast", self.fast)):
            arrays |= {f"{name}_mean": m.mean, f"{name}_scale": m.scale, f"{name}_layers": np.int64(len(m.weights))}
            arrays |= {f"{name}_w{i}": w for i, w in enumerate(m.weights)} | {f"{name}_b{i}": b for i, b in enumerate(m.biases)}
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path) -> PairQualityPredictor:
        z = np.load(path)

        def mlp(name: str) -> _MLP:
            n = int(z[f"{name}_layers"])
            return _MLP(z[f"{name}_mean"], z[f"{name}_scale"], [z[f"{name}_w{i}"] for i in range(n)], [z[f"{name}_b{i}"] for i in range(n)])

        return cls(mlp("step"), mlp("fast"))

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
    """Per K variant, the source to resume from: its entry id, similarity and predicted quality, and
    the variants on offer (the source clears K's threshold, or is predicted to keep the floor)."""

    entry: dict[str, int]
    similarity: dict[str, float]
    quality: dict[str, float]
    offered: frozenset[str] = frozenset()


def rank_sources(pair: PairQualityPredictor, embedding: np.ndarray, cands: SourceCandidates, thresholds: dict[str, float],
                 steps: dict[str, int], floor: float = OFFER_FLOOR) -> RankedSources:
    """For each K variant, the candidate the probe returned with the highest predicted quality,
    whatever its similarity: a less similar latent may suit the prompt better (one that differs in
    colour rather than background), and one below K's threshold may still keep the image. The
    variant is on offer when that source clears K's threshold (as NIRVANA's would) or its predicted
    quality reaches ``floor``. Ties go to the more similar."""
    entry, sim, quality, offered = {}, {}, {}, set()
    for v, ids in cands.ids.items():
        ok = np.flatnonzero(ids >= 0)
        if len(ok) == 0:
            entry[v], sim[v] = int(ids[0]), float(cands.similarity[v][0])
            continue
        q = pair.predict_step(embedding, cands.embeddings[v][ok], steps[v])
        best = int(ok[int(np.argmax(q))])  # argmax takes the first (most similar) of equals
        entry[v], sim[v], quality[v] = int(ids[best]), float(cands.similarity[v][best]), float(q.max())
        if sim[v] >= thresholds[v] or quality[v] >= floor:
            offered.add(v)
    return RankedSources(entry, sim, quality, frozenset(offered))
