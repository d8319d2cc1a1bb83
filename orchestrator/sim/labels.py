"""The fast/heavy scenario on a deployment's own quality table (``--quality-table``).

Two models of the table are the two variants: the base (heavy) model is ``k0`` and the fast model
is ``fast``; there is no cache. Latencies are the models' (``MODEL_LATENCY_S``: the HADIS
source's configuration, an NVIDIA L40S), and both models sit on every worker (an L40S's 48 GB
hold SD3.5-Large and SDXL-Lightning together), so switching costs nothing.

Prompts are split by text: the policies' profile and argus's text predictor see only the training
prompts; the request stream draws only test prompts, with replacement under the seed. The true
quality of a request is its prompt's measured relative quality (``quality_table``: 1 for the base,
``1 + pct(fast) - pct(base)`` for the fast model).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from orchestrator.policy.text_predictor import TextQualityPredictor
from orchestrator.profile.schema import Profile, QualityTable, VariantProfile
from orchestrator.sim.inputs import InputFileError
from orchestrator.sim.quality_table import QualityTableFormat, read_quality_table, split_by_text
from orchestrator.sim.world import PromptView, TableWorld

MODEL_LATENCY_S = {"sdxl-lightning-2step": 0.5, "sd3.5-large-turbo-4step": 1.3, "sd3.5-medium-50step": 13.0, "sd3.5-large-50step": 27.0}
"""Seconds per image on an NVIDIA L40S (HADIS ``hadis/src/config.py``, BASE_LATENCIES_SEC; ../shared/data/quality/README.md)."""
BATCH_DISCOUNT = 0.9
"""A batch of b > 1 takes b x 0.9 x one image's time (the same file's BATCH_DISCOUNT)."""
MAX_BATCH = {"sd3.5-medium-50step": 2, "sd3.5-large-50step": 2}
"""The 50-step models batch at most 2 (the same file); the others up to 32."""
EMBED_DIMS = 32
"""The dense prompt embedding the planner's prompt classes cluster: an SVD of the TF-IDF features."""


def model_latency_ms(model: str, latency_s: float | None = None) -> dict[int, float]:
    one = 1000.0 * (latency_s if latency_s is not None else MODEL_LATENCY_S[model])
    sizes = [b for b in (1, 2, 4, 8, 16, 32) if b <= MAX_BATCH.get(model, 32)]
    return {b: one * (1.0 if b == 1 else b * BATCH_DISCOUNT) for b in sizes}


@dataclasses.dataclass
class LabelScenario:
    profile: Profile
    predictor: TextQualityPredictor
    """Fitted on the training prompts only."""
    train: list[str]
    test: list[str]
    truth: dict[str, float]
    """Prompt -> measured relative quality of the fast model (train and test)."""
    embeddings: dict[str, np.ndarray]
    """Prompt -> unit-norm dense embedding (SVD of the training TF-IDF)."""
    fast: str
    base: str


LABEL_DURATION_S = 7200.0
"""The fast/heavy scenario's trace length by default: at 27 s per base image, the Twitter trace's own
four minutes hold 69 requests at 2x; two hours hold about 1,300."""

def build_label_scenario(path: Path, fast: str, base: str, fmt: QualityTableFormat | None = None, seed: int = 0,
                         test_fraction: float = 0.25, latency_s: dict[str, float] | None = None) -> LabelScenario:
    """Read the table, split by text, fit the text predictor and the dense embedding on the training prompts."""
    from sklearn.decomposition import TruncatedSVD

    labels = read_quality_table(path, fmt or QualityTableFormat())
    latency_s = {**MODEL_LATENCY_S, **(latency_s or {})}
    for m in (fast, base):
        labels.model_index(m)
        if m not in latency_s:
            raise InputFileError(f"no latency for model {m!r} (known: {', '.join(latency_s)}); give it with --fast-latency-s / --base-latency-s")
    rows = labels.both(fast, base)
    texts = [labels.prompts[i] for i in rows]
    rel = labels.relative_quality(fast, base)[rows]
    tr, te = split_by_text(texts, test_fraction, seed)
    train, test = [texts[i] for i in tr], [texts[i] for i in te]
    predictor = TextQualityPredictor.fit(train, {"fast": rel[tr]}, seed=seed)
    feats = predictor.featurizer  # fitted on the training prompts inside the predictor
    svd = TruncatedSVD(EMBED_DIMS, random_state=seed).fit(feats.transform(train))
    dense = svd.transform(feats.transform(texts)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True) + 1e-12
    embeddings = dict(zip(texts, dense))
    variants = {"k0": VariantProfile("k0", 0, base, model_latency_ms(base, latency_s[base])),
                "fast": VariantProfile("fast", 0, fast, model_latency_ms(fast, latency_s[fast]))}
    table = QualityTable(train, dense[tr], {"fast": rel[tr].astype(np.float32)}, {})
    profile = Profile(variants, table, {}, source=f"quality table {path}: k0 = {base}, fast = {fast}; latencies of an L40S (HADIS config); "
                                                    f"quality 1 + pct(fast) - pct(base) of {len(train)} training prompts")
    return LabelScenario(profile, predictor, train, test, dict(zip(texts, map(float, rel))), embeddings, fast, base)


class LabelWorld(TableWorld):
    """A prompt of the table: its dense embedding, no cache, and its measured quality per variant."""

    def __init__(self, scenario: LabelScenario):
        super().__init__(scenario.profile)
        self.scenario = scenario

    def observe(self, prompt: str, now_s: float | None = None) -> PromptView:
        return PromptView(self.scenario.embeddings[prompt], {}, {"k0": 1.0, "fast": self.scenario.truth[prompt]})


def label_stream(scenario: LabelScenario, n: int, seed: int) -> list[str]:
    """``n`` test prompts drawn with replacement under ``seed`` (a new order per seed, never a cycle)."""
    rng = np.random.default_rng(seed)
    return [scenario.test[i] for i in rng.integers(0, len(scenario.test), n)]


def label_world_factory(scenario: LabelScenario):
    return functools.partial(LabelWorld, scenario)
