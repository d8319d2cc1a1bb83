"""Quality prediction from a prompt's text, with the featurizer as a choice.

The tiny embedded text encoder reads only its own world's captions; a real prompt needs a featurizer
that reads real language. Here there is no pretrained encoder to download, so the honest default
is lexical (``TfidfFeaturizer``: TF-IDF over word 1-2-grams plus character 2-5-grams within words,
so "retriever" and "retrievers" share features). A deployment with a real CLIP passes its
embeddings instead (``EncoderFeaturizer``). The predictor on top is the same either way: one ridge
regression per variant, its strength chosen by cross-validation on the training prompts.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Callable, Protocol

import numpy as np

RIDGE_ALPHAS = (1.0, 3.0, 10.0, 30.0)
"""Ridge strengths tried by the inner cross-validation (strong shrinkage: labels are seed-noisy)."""


def text_key(text: str) -> str:
    """A prompt's identity for splitting: case and spacing folded, so a repeated text never scores itself."""
    return " ".join(text.lower().split())


def folds_by_text(prompts: list[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold number per prompt; the same text (``text_key``) is always in the same fold."""
    keys = [text_key(p) for p in prompts]
    distinct = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(distinct))
    fold_of = {distinct[i]: j % folds for j, i in enumerate(order)}
    return np.array([fold_of[k] for k in keys])


class TextFeaturizer(Protocol):
    def fit(self, texts: list[str]) -> TextFeaturizer: ...

    def transform(self, texts: list[str]):
        """(n, d) features, dense or scipy-sparse."""


@dataclasses.dataclass
class TfidfFeaturizer:
    """TF-IDF over word n-grams and character n-grams (scikit-learn), sublinear term frequency."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    _union: object = None

    def fit(self, texts: list[str]) -> TfidfFeaturizer:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_union

        self._union = make_union(TfidfVectorizer(ngram_range=self.word_ngrams, sublinear_tf=True),
                                 TfidfVectorizer(analyzer="char_wb", ngram_range=self.char_ngrams, sublinear_tf=True)).fit(texts)
        return self

    def transform(self, texts: list[str]):
        return self._union.transform(texts)


@dataclasses.dataclass
class EncoderFeaturizer:
    """A text encoder's embeddings (the deployed CLIP's pooled output): ``embed(texts) -> (n, d)``."""

    embed: Callable[[list[str]], np.ndarray]

    def fit(self, texts: list[str]) -> EncoderFeaturizer:
        return self

    def transform(self, texts: list[str]):
        return np.asarray(self.embed(list(texts)), dtype=np.float32)


@dataclasses.dataclass
class TextQualityPredictor:
    """Relative quality per variant from a prompt's text: ridge per variant on ``featurizer`` features."""

    featurizer: TextFeaturizer
    models: dict[str, object]
    """Variant -> fitted sklearn Ridge."""
    alphas: dict[str, float]
    cap: float = 1.5
    """Predictions are clipped to [0, cap]."""

    @classmethod
    def fit(cls, texts: list[str], quality: dict[str, np.ndarray], featurizer: TextFeaturizer | None = None, folds: int = 4,
            seed: int = 0) -> TextQualityPredictor:
        """Fit the featurizer on ``texts`` and one ridge per variant, its alpha chosen by ``folds``-fold
        cross-validation on these texts (grouped by text, so a repeated text never scores itself)."""
        from sklearn.linear_model import Ridge

        featurizer = (featurizer or TfidfFeaturizer()).fit(list(texts))
        x = featurizer.transform(list(texts))
        fold = folds_by_text(list(texts), folds, seed)
        models, alphas = {}, {}
        for v, y in quality.items():
            y = np.asarray(y, np.float64)
            errors = []
            for a in RIDGE_ALPHAS:
                err = 0.0
                for f in range(folds):
                    tr, te = fold != f, fold == f
                    err += float(np.abs(Ridge(alpha=a).fit(x[tr], y[tr]).predict(x[te]) - y[te]).sum())
                errors.append(err)
            alphas[v] = RIDGE_ALPHAS[int(np.argmin(errors))]
            models[v] = Ridge(alpha=alphas[v]).fit(x, y)
        return cls(featurizer, models, alphas)

    def predict_texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        x = self.featurizer.transform(list(texts))
        return {v: np.clip(m.predict(x), 0.0, self.cap) for v, m in self.models.items()}

    def predict(self, text: str) -> dict[str, float]:
        """One prompt's predictions (cached by text: a repeated prompt costs a dictionary lookup)."""
        return dict(self._one(text))

    @lru_cache(maxsize=65536)  # noqa: B019 - the predictor lives as long as its policy context
    def _one(self, text: str) -> tuple[tuple[str, float], ...]:
        return tuple((v, float(p[0])) for v, p in self.predict_texts([text]).items())

    def __hash__(self) -> int:
        return id(self)
