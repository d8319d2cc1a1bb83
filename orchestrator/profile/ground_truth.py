"""The simulator's ground-truth table, as the profile carries it: measured relative quality keyed by
prompt kind, what differs between a prompt and its cached source, and K; the fast model's per kind;
quality by similarity bin for prompts outside the world; and the per-K similarity below which hits lose
more than the quality floor (the cache's thresholds never go below it).
``orchestrator.sim.ground_truth`` builds it from ground-truth triples and reads world prompts into its keys.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("simple", "medium", "hard", "counting")
DIFFERENCE_CLASSES = ("none", "colour", "size", "position", "background", "shape", "count", "several")
"""What differs between a prompt and its cached source; "several": more than one kind of attribute."""


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
    quality_thresholds: dict[int, float]
    """Per K, the lowest similarity whose hits keep the quality floor (the cache's thresholds are at least these)."""
    source: str = ""

    # ------------------------------------------------------------------ lookups
    def step_quality(self, kind: str, difference: str, k: int) -> float:
        """The cell's mean; a cell never measured backs off to the same difference over every kind, then
        to "several" for the kind (the worst measured case)."""
        if (kind, difference, k) in self.step:
            return self.step[(kind, difference, k)].mean
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

    def to_json(self) -> dict:
        step: dict = {}
        for (kind, diff, k), c in sorted(self.step.items()):
            step.setdefault(kind, {}).setdefault(diff, {})[str(k)] = dataclasses.asdict(c)
        return {"source": self.source, "step": step, "fast": {k: dataclasses.asdict(c) for k, c in self.fast.items()},
                "similarity_bins": {str(k): {"upper_edges": np.round(e, 5).tolist(), "mean_quality": np.round(m, 5).tolist()}
                                    for k, (e, m) in self.similarity_bins.items()},
                "quality_thresholds": {str(k): round(t, 5) for k, t in self.quality_thresholds.items()}}

    @classmethod
    def from_json(cls, data: dict) -> GroundTruthTable:
        step = {(kind, diff, int(k)): Cell(**c) for kind, by_diff in data["step"].items() for diff, by_k in by_diff.items() for k, c in by_k.items()}
        bins = {int(k): (np.asarray(b["upper_edges"], np.float32), np.asarray(b["mean_quality"], np.float32)) for k, b in data["similarity_bins"].items()}
        return cls(step, {k: Cell(**c) for k, c in data["fast"].items()}, bins, {int(k): float(t) for k, t in data["quality_thresholds"].items()},
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
                  "", "Quality thresholds (the lowest similarity whose hits keep the floor): "
                  + ", ".join(f"K={k} {t:.3f}" for k, t in sorted(self.quality_thresholds.items())) + "."]
        return "\n".join(lines) + "\n"


