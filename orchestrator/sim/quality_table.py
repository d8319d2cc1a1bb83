"""A deployment's own per-prompt quality labels: ``--quality-table FILE``.

A quality table says how good each model (or variant) is on each prompt, by some metric of the
deployment's choosing, usually over several seeds. Two layouts, CSV/TSV, gzip or not:

- long: one row per (prompt, model, seed, score); column names from ``QualityTableFormat``;
- wide: one row per (prompt, seed) with one score column per model (``models`` names them; by
  default every column that is not the prompt or the seed).

Scores become a relative quality per prompt in two documented steps:

1. ``score_kind="probability"`` (HADIS's ``p_real``, values near 0): each score is clipped to
   [1e-7, 1 - 1e-7] and taken as a logit, so that 1e-4 and 2e-4 are as far apart as 0.1 and 0.2
   in odds; ``"raw"`` keeps scores as they are. Seeds are averaged per (prompt, model) after this.
2. Every seed-mean is replaced by its percentile among all seed-means of the table (every prompt
   and every model pooled): one common scale in [0, 1], whatever the metric's units. Relative
   quality of model m on prompt p against the base b is ``1 + pct(m, p) - pct(b, p)``: 1 for the
   base itself, below 1 by the percentile points lost, above 1 where the metric ranks m's image of
   this prompt better than b's (not capped: those prompts are what a fast/heavy router is for).

Rows that cannot be read raise ``InputFileError`` with one line naming file and row.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from orchestrator.policy.text_predictor import text_key
from orchestrator.sim.inputs import InputFileError, _csv_rows, _kind

PROBABILITY_CLIP = 1e-7


@dataclasses.dataclass(frozen=True)
class QualityTableFormat:
    """Column names and the score's kind; defaults read the HADIS table in ../shared/data/quality."""

    layout: str = "long"
    """long (prompt, model, seed, score per row) or wide (a score column per model)."""
    prompt_column: str = "prompt"
    model_column: str = "model"
    seed_column: str = "seed"
    """Empty: rows carry no seed (each row is one more sample)."""
    score_column: str = "p_real"
    models: tuple[str, ...] = ()
    """Wide layout: the score columns (empty: every column but the prompt and the seed)."""
    score_kind: str = "probability"
    """probability (taken as a logit) or raw."""


@dataclasses.dataclass
class QualityLabels:
    """Seed-mean scores per distinct prompt text and model, on the transformed scale."""

    prompts: list[str]
    models: list[str]
    scores: np.ndarray
    """(prompts, models) seed-mean score; NaN where a prompt has no row for a model."""
    seeds: np.ndarray
    """(prompts, models) how many rows were averaged."""
    source: str = ""

    def percentiles(self) -> np.ndarray:
        """Every seed-mean as its percentile (0..1) among all of the table's seed-means."""
        flat = self.scores[np.isfinite(self.scores)]
        pooled = np.sort(flat)
        out = np.full(self.scores.shape, np.nan)
        ok = np.isfinite(self.scores)
        # mid-rank of ties, so equal scores get equal percentiles
        lo = np.searchsorted(pooled, self.scores[ok], side="left")
        hi = np.searchsorted(pooled, self.scores[ok], side="right")
        out[ok] = (lo + hi) / 2.0 / len(pooled)
        return out

    def relative_quality(self, model: str, base: str) -> np.ndarray:
        """(prompts,) ``1 + pct(model) - pct(base)`` per prompt (NaN where either is missing)."""
        pct = self.percentiles()
        return 1.0 + pct[:, self.model_index(model)] - pct[:, self.model_index(base)]

    def model_index(self, model: str) -> int:
        if model not in self.models:
            raise InputFileError(f"{self.source}: no model {model!r} (models: {', '.join(self.models)})")
        return self.models.index(model)

    def both(self, model: str, base: str) -> np.ndarray:
        """Rows (prompt indices) labelled for both models."""
        i, j = self.model_index(model), self.model_index(base)
        return np.flatnonzero(np.isfinite(self.scores[:, i]) & np.isfinite(self.scores[:, j]))


def _score(path: Path, line: int, name: str, raw, kind: str) -> float:
    text = "" if raw is None else str(raw).strip()
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(f"{path}:{line}: {name!r} is not a number: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise InputFileError(f"{path}:{line}: {name!r} is not finite: {text[:40]!r}")
    if kind == "probability":
        if not 0.0 <= value <= 1.0:
            raise InputFileError(f"{path}:{line}: {name!r} is a probability score but {value!r} is outside [0, 1] (use --score-kind raw)")
        p = min(max(value, PROBABILITY_CLIP), 1 - PROBABILITY_CLIP)
        return math.log(p / (1 - p))
    return value


def _need(path: Path, columns: list[str], name: str, flag: str) -> None:
    if name not in columns:
        raise InputFileError(f"{path}: no column {name!r} (columns: {', '.join(columns[:12])}); choose one with {flag}")


def read_quality_table(path: Path, fmt: QualityTableFormat = QualityTableFormat()) -> QualityLabels:
    """Read a long or wide quality table (CSV/TSV, gzip by content) into seed-mean scores."""
    path = Path(path)
    if fmt.layout not in ("long", "wide"):
        raise InputFileError(f"--table-layout must be long or wide, not {fmt.layout!r}")
    if fmt.score_kind not in ("probability", "raw"):
        raise InputFileError(f"--score-kind must be probability or raw, not {fmt.score_kind!r}")
    if _kind(path) not in ("csv", "tsv"):
        raise InputFileError(f"{path}: a quality table is CSV or TSV (optionally .gz)")
    sums: dict[tuple[str, str], list[float]] = {}
    models: list[str] = []
    checked = False
    for line, row, columns in _csv_rows(path, "\t" if _kind(path) == "tsv" else ","):
        if not checked:
            _need(path, columns, fmt.prompt_column, "--prompt-column")
            if fmt.seed_column:
                _need(path, columns, fmt.seed_column, "--seed-column")
            if fmt.layout == "long":
                _need(path, columns, fmt.model_column, "--model-column")
                _need(path, columns, fmt.score_column, "--score-column")
            else:
                models = list(fmt.models) or [c for c in columns if c not in (fmt.prompt_column, fmt.seed_column)]
                for m in models:
                    _need(path, columns, m, "--models")
            checked = True
        prompt = (row.get(fmt.prompt_column) or "").strip()
        if not prompt:
            raise InputFileError(f"{path}:{line}: empty {fmt.prompt_column!r}")
        if None in row:  # more fields than the header names
            raise InputFileError(f"{path}:{line}: more fields than the header's {len(columns)}")
        if fmt.layout == "long":
            model = (row.get(fmt.model_column) or "").strip()
            if not model:
                raise InputFileError(f"{path}:{line}: empty {fmt.model_column!r}")
            cells = [(model, row.get(fmt.score_column), fmt.score_column)]
        else:
            cells = [(m, row.get(m), m) for m in models]
        for model, raw, name in cells:
            if raw is None:
                raise InputFileError(f"{path}:{line}: missing {name!r} (fewer fields than the header)")
            sums.setdefault((prompt, model), []).append(_score(path, line, name, raw, fmt.score_kind))
            if model not in models:
                models.append(model)
    if not sums:
        raise InputFileError(f"{path}: no rows")
    prompts = list(dict.fromkeys(p for p, _ in sums))
    index = {p: i for i, p in enumerate(prompts)}
    scores = np.full((len(prompts), len(models)), np.nan)
    seeds = np.zeros((len(prompts), len(models)), np.int64)
    for (p, m), values in sums.items():
        scores[index[p], models.index(m)] = float(np.mean(values))
        seeds[index[p], models.index(m)] = len(values)
    return QualityLabels(prompts, models, scores, seeds, str(path))


def split_by_text(prompts: list[str], test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of distinct prompt texts (``text_key``), so that no text is in both."""
    keys = [text_key(p) for p in prompts]
    distinct = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(distinct))
    test_keys = {distinct[i] for i in order[: int(round(len(distinct) * test_fraction))]}
    test = np.array([k in test_keys for k in keys])
    return np.flatnonzero(~test), np.flatnonzero(test)
