"""The simulator's truth for world prompts: measured ground truth keyed by what differs.

A world prompt's attributes are known to the grammar (``tiny_model.world.parse_caption``). The true
quality of serving prompt P at step-skip level K from a cached source S is the seed-averaged,
ground-truth-scored relative quality measured on the shipped weights (``argus build-pairs``,
``tiny_model.pair_data``) for P's kind, for what differs between P and S (``spec_difference``), and
for K; the fast model's is measured per kind. Each cell carries its count and standard error.

Real prompts outside the world have no ground truth: their truth at K is borrowed from the world
pairs at that K whose prompt-source similarity is nearest (``by_similarity``: the mean over a
similarity bin), and the fast model's from the mean over every measured world prompt.

The same measurements calibrate the cache's similarity threshold per K (``calibrate_thresholds``):
the lowest similarity at and above which the mean measured quality stays at or above a floor, made
monotone in K as NIRVANA's published thresholds are.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tiny_model.world import SceneSpec, parse_caption

KINDS = ("simple", "medium", "hard", "counting")
DIFFERENCE_CLASSES = ("none", "colour", "size", "position", "background", "shape", "count", "several")
"""What differs between a prompt and its cached source; "several": more than one kind of attribute."""
SIMILARITY_BINS = 20
"""Quantile bins of prompt-source similarity per K, for real prompts' borrowed truth."""
QUALITY_FLOOR = 0.95
"""Threshold calibration: the mean quality a K's hits must keep."""


def kind_of(spec: SceneSpec) -> str:
    return "counting" if spec.counting else {1: "simple", 2: "medium"}.get(len(spec.objects), "hard")


def spec_difference(target: SceneSpec, source: SceneSpec) -> str:
    """Which kind of attribute differs between two parsed captions (``DIFFERENCE_CLASSES``)."""
    if target == source:
        return "none"
    found: set[str] = set()
    if target.counting != source.counting or (len(target.objects) != len(source.objects) and not target.counting):
        return "several"
    if len(target.objects) != len(source.objects):
        found.add("count")
    for a, b in zip(target.objects, source.objects):
        for attr, name in (("shape", "shape"), ("color", "colour"), ("size", "size")):
            if getattr(a, attr) != getattr(b, attr):
                found.add(name)
        if a.position != b.position and not target.counting:
            found.add("position")
    if target.background != source.background:
        found.add("background")
    return found.pop() if len(found) == 1 else ("several" if found else "none")


@dataclasses.dataclass(frozen=True)
class Cell:
    mean: float
    n: int
    se: float

    @classmethod
    def of(cls, values: np.ndarray) -> Cell:
        v = np.asarray(values, np.float64)
        return cls(float(v.mean()), int(len(v)), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0)


@dataclasses.dataclass
class GroundTruthTable:
    step: dict[tuple[str, str, int], Cell]
    """(prompt kind, what differs, K) -> relative quality of resuming at K from such a source."""
    fast: dict[str, Cell]
    """Prompt kind -> relative quality of the fast model."""
    similarity_bins: dict[int, tuple[np.ndarray, np.ndarray]]
    """K -> (bin upper edges of prompt-source similarity, mean relative quality per bin)."""
    thresholds: dict[int, float]
    """Calibrated cache similarity threshold per K."""
    source: str = ""

    # ------------------------------------------------------------------ lookups
    def step_quality(self, kind: str, difference: str, k: int) -> float:
        """The cell's mean; a cell never measured backs off to the same difference over every kind, then
        to "several" for the kind (the worst measured case)."""
        for key in ((kind, difference, k),):
            if key in self.step:
                return self.step[key].mean
        pooled = [c for (_, d, kk), c in self.step.items() if d == difference and kk == k]
        if pooled:
            return float(sum(c.mean * c.n for c in pooled) / sum(c.n for c in pooled))
        return self.step.get((kind, "several", k), Cell(0.0, 0, 0.0)).mean

    def fast_quality(self, kind: str | None) -> float:
        if kind in self.fast:
            return self.fast[kind].mean
        return float(sum(c.mean * c.n for c in self.fast.values()) / max(sum(c.n for c in self.fast.values()), 1))

    def by_similarity(self, k: int, similarity: float) -> float:
        edges, means = self.similarity_bins[k]
        return float(means[min(int(np.searchsorted(edges, similarity)), len(means) - 1)])

    def truth(self, target: str, source: str | None, k: int) -> float:
        """Relative quality of ``target`` served at K from the latent cached for ``source`` (K=0: 1)."""
        if k == 0:
            return 1.0
        a, b = parse_caption(target), parse_caption(source) if source is not None else None
        if a is None or b is None:
            return float("nan")  # not world prompts: the caller borrows by similarity
        return self.step_quality(kind_of(a), spec_difference(a, b), k)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_pairs(cls, pairs, floor: float = QUALITY_FLOOR, bins: int = SIMILARITY_BINS) -> GroundTruthTable:
        """Group a ``tiny_model.pair_data.PairTable``'s triples by (kind, what differs, K)."""
        specs = [parse_caption(p) for p in pairs.prompts]
        kinds = np.array([kind_of(specs[i]) for i in pairs.target])
        diffs = np.array([spec_difference(specs[t], specs[s]) for t, s in zip(pairs.target, pairs.source)])
        q = np.asarray(pairs.relative_quality, np.float64)
        step = {}
        for key in sorted(set(zip(kinds, diffs, pairs.k.tolist()))):
            m = (kinds == key[0]) & (diffs == key[1]) & (pairs.k == key[2])
            step[(str(key[0]), str(key[1]), int(key[2]))] = Cell.of(q[m])
        fast_kinds = np.array([kind_of(specs[i]) for i in pairs.fast_prompt])
        fast = {k: Cell.of(pairs.fast_quality[fast_kinds == k]) for k in KINDS if (fast_kinds == k).any()}
        sim = pairs.similarity
        sim_bins = {}
        for k in sorted(set(pairs.k.tolist())):
            m = pairs.k == k
            s, v = sim[m], q[m]
            edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)[1:]))
            idx = np.minimum(np.searchsorted(edges, s), len(edges) - 1)
            means = np.array([v[idx == i].mean() if (idx == i).any() else np.nan for i in range(len(edges))])
            means = np.where(np.isnan(means), np.nanmean(v), means)
            sim_bins[int(k)] = (edges.astype(np.float32), means.astype(np.float32))
        return cls(step, fast, sim_bins, calibrate_thresholds(sim, q, pairs.k, floor))

    def to_json(self) -> dict:
        step: dict = {}
        for (kind, diff, k), c in sorted(self.step.items()):
            step.setdefault(kind, {}).setdefault(diff, {})[str(k)] = dataclasses.asdict(c)
        return {"source": self.source, "step": step, "fast": {k: dataclasses.asdict(c) for k, c in self.fast.items()},
                "similarity_bins": {str(k): {"upper_edges": np.round(e, 5).tolist(), "mean_quality": np.round(m, 5).tolist()}
                                    for k, (e, m) in self.similarity_bins.items()},
                "thresholds": {str(k): round(t, 5) for k, t in self.thresholds.items()}}

    @classmethod
    def from_json(cls, data: dict) -> GroundTruthTable:
        step = {(kind, diff, int(k)): Cell(**c) for kind, by_diff in data["step"].items() for diff, by_k in by_diff.items() for k, c in by_k.items()}
        bins = {int(k): (np.asarray(b["upper_edges"], np.float32), np.asarray(b["mean_quality"], np.float32)) for k, b in data["similarity_bins"].items()}
        return cls(step, {k: Cell(**c) for k, c in data["fast"].items()}, bins, {int(k): float(t) for k, t in data["thresholds"].items()},
                   data.get("source", ""))

    def markdown(self) -> str:
        """Per K, a row per kind of what differs: mean (count, standard error), for the docs."""
        levels = sorted({k for _, _, k in self.step})
        lines = ["| kind | differs | " + " | ".join(f"K={k}" for k in levels) + " |", "|---|---|" + "---|" * len(levels)]
        for kind in KINDS:
            for diff in DIFFERENCE_CLASSES:
                cells = [self.step.get((kind, diff, k)) for k in levels]
                if any(cells):
                    lines.append(f"| {kind} | {diff} | " + " | ".join(f"{c.mean:.2f} ({c.n}, ±{c.se:.2f})" if c else "-" for c in cells) + " |")
        lines += ["", "Fast model: " + ", ".join(f"{k} {c.mean:.2f} ({c.n}, ±{c.se:.2f})" for k, c in self.fast.items()) + ".",
                  "", "Calibrated thresholds: " + ", ".join(f"K={k} {t:.3f}" for k, t in sorted(self.thresholds.items())) + "."]
        return "\n".join(lines) + "\n"


def calibrate_thresholds(similarity: np.ndarray, quality: np.ndarray, k: np.ndarray, floor: float = QUALITY_FLOOR,
                         min_hits: int = 10) -> dict[int, float]:
    """Per K, the lowest similarity s whose hits (the measured triples with similarity >= s, at least
    ``min_hits`` of them, so one lucky pair cannot set it) keep mean quality >= ``floor``; then a running
    maximum over K, so a larger K never accepts a less similar source. A K where even the most similar
    triples fall short gets 1 (only a cached copy of the same prompt clears it)."""
    out: dict[int, float] = {}
    for level in sorted(set(np.asarray(k).tolist())):
        m = np.asarray(k) == level
        order = np.argsort(-similarity[m], kind="stable")
        s, q = similarity[m][order], quality[m][order]
        means = np.cumsum(q) / np.arange(1, len(q) + 1)  # mean quality of the top-i most similar
        last_tie = np.r_[s[1:] < s[:-1], True]  # a prefix may end only where the similarity changes
        ok = np.flatnonzero((means >= floor) & last_tie & (np.arange(1, len(q) + 1) >= min(min_hits, len(q))))
        out[int(level)] = float(s[ok[-1]]) if len(ok) else 1.0
    running = -np.inf
    for level in sorted(out):
        running = max(running, out[level])
        out[level] = float(running)
    return out
