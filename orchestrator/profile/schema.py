"""The profile: everything the policies and the simulator know about the deployment.

Written by ``argus profile`` from measurements (latency per variant and batch through Triton;
relative quality of each training prompt under each variant, scored by the quality scorer), or
by hand for a GPU deployment from cited public figures. Policies read only this file and live
signals, never hard-coded numbers.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from orchestrator.profile.ground_truth import GroundTruthTable


@dataclasses.dataclass
class VariantProfile:
    name: str
    """'k{K}' (step-skip level K of the base model) or 'fast' (the smaller model)."""
    k: int
    model: str
    """Triton model serving it (a t2i_* ensemble)."""
    latency_ms: dict[int, float]
    """Batch size -> latency of one batch on one worker."""
    load_time_s: float = 0.0
    """Time to make this variant servable on a worker that serves another variant: 0 between K
    variants of the same weights (already loaded), the model load time for another model."""
    needs_cache: bool = False
    """K > 0 variants need a cached latent whose similarity clears the level's threshold."""

    def batch_latency_ms(self, n: int) -> float:
        """Latency of a batch of ``n``: linear between profiled sizes (a dynamic batcher runs a batch
        of 3 as 3, not padded to 4), the smallest profiled latency below it, proportional above the largest."""
        sizes = sorted(self.latency_ms)
        if n <= sizes[0]:
            return self.latency_ms[sizes[0]]
        for a, b in zip(sizes, sizes[1:]):
            if n <= b:
                return self.latency_ms[a] + (self.latency_ms[b] - self.latency_ms[a]) * (n - a) / (b - a)
        return self.latency_ms[sizes[-1]] * n / sizes[-1]

    def max_batch(self, slo_ms: float, limit: int) -> int:
        """The largest batch (at most ``limit``) whose latency fits the SLO: a bigger one would make every
        request in it late, so a worker never forms it (at least 1)."""
        return max([n for n in range(1, limit + 1) if self.batch_latency_ms(n) <= slo_ms] or [1])

    def best_batch(self, slo_ms: float) -> int:
        """The largest profiled batch whose latency fits half the SLO (the other half is queueing)."""
        ok = [b for b, ms in self.latency_ms.items() if ms <= slo_ms / 2]
        return max(ok) if ok else min(self.latency_ms)

    def throughput(self, slo_ms: float) -> float:
        """Images per second one worker sustains at the best batch for this SLO."""
        b = self.best_batch(slo_ms)
        return 1000.0 * b / self.latency_ms[b]


@dataclasses.dataclass
class FrontDoorCost:
    """What one request costs beyond its generation batch, measured through a real front door by
    ``argus profile``. The router adds it to every estimate and the simulator charges it, so that
    live and simulated runs count the same work. Zero in a profile written before it existed."""

    probe_ms: float = 0.0
    """The probe call (text encoder + cache lookup) for one prompt: worker time, on the same cores as the denoisers."""
    overhead_ms: float = 0.0
    """The rest of the front door's latency per request (decision, bookkeeping, both gRPC hops), beyond probe and generation."""
    mixed_slowdown: float = 1.0
    """Wall time of two variants' batches run at once on one worker over the sum of their times alone: above 1, a
    worker loses throughput when variants share its cores (the simulator runs one batch at a time and scales a
    batch that starts while another variant waits by it)."""

    @property
    def per_request_s(self) -> float:
        return (self.probe_ms + self.overhead_ms) / 1000.0


@dataclasses.dataclass
class QualityTable:
    """Per training prompt: its pooled embedding, and per variant the relative quality q(v)/q(k0)
    and (for K variants) the similarity of the cached latent it started from."""

    prompts: list[str]
    embeddings: np.ndarray  # (N, D), unit norm
    relative_quality: dict[str, np.ndarray]  # variant -> (N,)
    similarity: dict[str, np.ndarray]  # K variant -> (N,)


@dataclasses.dataclass
class Profile:
    variants: dict[str, VariantProfile]
    quality: QualityTable
    thresholds: dict[int, float]
    """Cache similarity thresholds per K."""
    source: str = ""
    """Where the numbers come from (measured command, or cited figures)."""
    frontdoor: FrontDoorCost = dataclasses.field(default_factory=FrontDoorCost)
    ground_truth: GroundTruthTable | None = None
    """The simulator's truth for world prompts, keyed by what differs (``argus build-pairs``); None in
    a profile written before it existed (the benches then refuse the simulated cache)."""

    def available_variants(self, similarity: dict[str, float]) -> frozenset[str]:
        """Variants servable for a prompt: those needing no cache, and each K variant whose best
        cached similarity (-1 when nothing is cached) clears K's threshold."""
        return frozenset(
            v for v, vp in self.variants.items() if not vp.needs_cache or similarity.get(v, -1.0) >= self.thresholds[vp.k]
        )

    def scaled(self, factor: float, note: str = "") -> Profile:
        """The same profile on a machine ``factor`` times slower (every latency and the front door's
        per-request cost scaled; quality, thresholds and load times kept): this shared machine's
        speed drifts by tens of percent within an hour, and a speed check of a few seconds
        (``measure.measure_speed``) tells by how much since the full profile was measured."""
        variants = {n: dataclasses.replace(v, latency_ms={b: ms * factor for b, ms in v.latency_ms.items()}) for n, v in self.variants.items()}
        fd = dataclasses.replace(self.frontdoor, probe_ms=self.frontdoor.probe_ms * factor, overhead_ms=self.frontdoor.overhead_ms * factor)
        return dataclasses.replace(self, variants=variants, frontdoor=fd, source=f"{self.source}; latencies x{factor:.3f}{note}")

    @property
    def fastest_variant(self) -> str:
        return min(self.variants, key=lambda v: self.variants[v].latency_ms[min(self.variants[v].latency_ms)])

    def to_json(self) -> dict:
        q = self.quality
        return {
            "source": self.source,
            "frontdoor": dataclasses.asdict(self.frontdoor),
            "thresholds": {str(k): v for k, v in self.thresholds.items()},
            "variants": {n: {**dataclasses.asdict(v), "latency_ms": {str(b): ms for b, ms in v.latency_ms.items()}} for n, v in self.variants.items()},
            "quality": {
                "prompts": q.prompts,
                "embeddings": np.round(q.embeddings, 6).tolist(),
                "relative_quality": {v: np.round(x, 5).tolist() for v, x in q.relative_quality.items()},
                "similarity": {v: np.round(x, 5).tolist() for v, x in q.similarity.items()},
            },
            **({"ground_truth": self.ground_truth.to_json()} if self.ground_truth is not None else {}),
        }

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()) + "\n")

    @classmethod
    def from_json(cls, data: dict) -> Profile:
        variants = {}
        for name, v in data["variants"].items():
            v = dict(v)
            v["latency_ms"] = {int(b): float(ms) for b, ms in v["latency_ms"].items()}
            variants[name] = VariantProfile(**v)
        q = data["quality"]
        table = QualityTable(
            prompts=list(q["prompts"]),
            embeddings=np.asarray(q["embeddings"], dtype=np.float32),
            relative_quality={v: np.asarray(x, dtype=np.float32) for v, x in q["relative_quality"].items()},
            similarity={v: np.asarray(x, dtype=np.float32) for v, x in q["similarity"].items()},
        )
        missing = [v for v in variants if v not in table.relative_quality and v != "k0"]
        if missing:
            raise ValueError(f"profile has no quality data for variants {missing}")
        gt = GroundTruthTable.from_json(data["ground_truth"]) if "ground_truth" in data else None
        return cls(variants, table, {int(k): float(t) for k, t in data["thresholds"].items()}, data.get("source", ""),
                   FrontDoorCost(**data.get("frontdoor", {})), gt)

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls.from_json(json.loads(Path(path).read_text()))
