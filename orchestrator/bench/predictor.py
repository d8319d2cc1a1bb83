"""``argus eval-predictor``: how well quality is predicted on prompts of templates never trained on.

With ``--pairs`` (ground-truth triples, ``argus build-pairs``): the pair predictor, in folds that
split the prompts by template (no template in both train and test), against two baselines on the
same folds: each variant's training mean, and a predictor that sees only the new prompt and the
similarity (ridge on [e_t, s, s^2] per variant, as ``predictor.QualityPredictor``).

    mae_ratio_to_mean      held-out MAE / MAE of predicting the variant's training mean, averaged over variants
    spearman               rank correlation of predicted and measured, per variant, averaged
    oracle_pick_agreement  per held-out prompt and speed budget (every variant's batch-1 latency, k0
                           excluded as under load), the option (fast, or a cached source at some K
                           within the budget) with the highest predicted quality is one with the
                           highest measured quality, within the noise of a seed-averaged measurement
                           (seed_noise_std / sqrt(seeds)): options closer than that are not measured apart
    calibration            deciles of predicted quality: mean predicted vs mean measured

Without ``--pairs``: the per-prompt predictor on the profile's quality table (random splits), as before.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from orchestrator.policy.predictor import EXACT_MATCH, QualityPredictor, evaluate_predictor
from orchestrator.profile.schema import Profile, QualityTable


def run_predictor_eval(profile_path: Path, splits: int = 5, console=None) -> dict:
    prof = Profile.load(profile_path)
    runs = [evaluate_predictor(prof, seed=s) for s in range(splits)]
    out = {
        "splits": splits,
        "prompts": len(prof.quality.prompts),
        "mae_ratio_to_mean": float(np.mean([np.mean([r["mae"][v] / r["mae_of_mean_baseline"][v] for v in r["mae"]]) for r in runs])),
        "oracle_pick_agreement": float(np.mean([r["oracle_agreement"] for r in runs])),
        "mean_quality_regret": float(np.mean([r["mean_quality_regret"] for r in runs])),
    }
    if console:
        console.print(f"{splits} random 75/25 splits of {out['prompts']} prompts: held-out MAE / MAE of the mean = {out['mae_ratio_to_mean']:.3f}; "
                      f"oracle-pick agreement {out['oracle_pick_agreement']:.1%}; mean quality regret {out['mean_quality_regret']:.3f}")
    return out


@dataclasses.dataclass
class HeldOut:
    """Held-out predictions of one model, concatenated over folds, per variant ('k5'..., 'fast')."""

    predicted: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    measured: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    mean_baseline: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    options: list[tuple[int, str, float, float]] = dataclasses.field(default_factory=list)
    """(target prompt, variant, predicted, measured) per held-out option, for the oracle picks."""
    cells: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    """K variant -> the held-out rows' cell means (``cell_means``), where known."""

    def add(self, variant: str, target: np.ndarray, pred: np.ndarray, true: np.ndarray, train_mean: float) -> None:
        self.predicted.setdefault(variant, []).extend(map(float, pred))
        self.measured.setdefault(variant, []).extend(map(float, true))
        self.mean_baseline.setdefault(variant, []).extend([train_mean] * len(true))
        self.options += [(int(t), variant, float(p), float(m)) for t, p, m in zip(target, pred, true)]


def _prompt_only(variant: str, embeddings: np.ndarray, quality: np.ndarray, similarity: np.ndarray | None, test: np.ndarray) -> np.ndarray:
    """The baseline that sees the new prompt and the similarity but not the source: the serving
    ``QualityPredictor`` (ridge on [e_t, s, s^2]), fitted on the rows not in ``test``, predicted on those in it."""
    table = QualityTable([str(i) for i in range(len(quality))], embeddings, {variant: quality},
                         {} if similarity is None else {variant: similarity})
    pred = QualityPredictor.fit(table, rows=np.flatnonzero(~test)).predict_table(table, np.flatnonzero(test))[variant]
    return pred if similarity is None else np.where(similarity[test] >= EXACT_MATCH, 1.0, pred)


def held_out(pairs, folds: int = 4, seed: int = 0, extra=None, cell_of=None, fit_kw: dict | None = None) -> dict[str, HeldOut]:
    """Template-grouped folds: the pair predictor and the prompt-only baseline, predicted on every held-out row.
    ``extra(held-out templates, training triples, training fast rows)``: more training rows for the pair
    predictor built from the training fold alone (the world's ``cell_rows``). ``cell_of``: triple rows ->
    their cell means, kept beside the measured values (``cell_means``). ``fit_kw``: the network and weight
    decay (``PairQualityPredictor.fit``'s defaults unless given)."""
    from orchestrator.policy.pair_predictor import PairQualityPredictor

    templates = np.array(pairs.templates)
    tgt_groups = templates[pairs.target]
    fast_groups = templates[pairs.fast_prompt]
    names = sorted(set(tgt_groups))
    fold_of = {t: i % folds for i, t in enumerate(np.random.default_rng(seed).permutation(names))}
    out = {"pair": HeldOut(), "prompt_only": HeldOut()}
    e, sim = pairs.embeddings, pairs.similarity
    for f in range(folds):
        test_t = np.array([fold_of[g] == f for g in tgt_groups])
        test_f = np.array([fold_of[g] == f for g in fast_groups])
        if not test_t.any():
            continue
        held = frozenset(g for g in names if fold_of[g] == f)
        rows = extra(held, np.flatnonzero(~test_t), np.flatnonzero(~test_f)) if extra is not None else None
        model = PairQualityPredictor.fit(pairs, np.flatnonzero(~test_t), np.flatnonzero(~test_f), seed=seed, extra=rows, **(fit_kw or {}))
        for k in sorted(set(pairs.k.tolist())):
            tr, te = ~test_t & (pairs.k == k), test_t & (pairs.k == k)
            y_tr, y_te = pairs.relative_quality[tr], pairs.relative_quality[te]
            tgt = pairs.target[te]
            out["pair"].add(f"k{k}", tgt, model.predict_step(e[tgt], e[pairs.source[te]], pairs.k[te]), y_te, float(y_tr.mean()))
            if cell_of is not None:
                out["pair"].cells.setdefault(f"k{k}", []).extend(map(float, cell_of(np.flatnonzero(te))))
            at_k = pairs.k == k
            base = _prompt_only(f"k{k}", e[pairs.target[at_k]], pairs.relative_quality[at_k], sim[at_k], test_t[at_k])
            out["prompt_only"].add(f"k{k}", tgt, base, y_te, float(y_tr.mean()))
        yf_tr, yf_te = pairs.fast_quality[~test_f], pairs.fast_quality[test_f]
        tgt = pairs.fast_prompt[test_f]
        out["pair"].add("fast", tgt, np.array([model.predict_fast(e[t]) for t in tgt]), yf_te, float(yf_tr.mean()))
        base = _prompt_only("fast", e[pairs.fast_prompt], pairs.fast_quality, None, test_f)
        out["prompt_only"].add("fast", tgt, base, yf_te, float(yf_tr.mean()))
    return out


def oracle_agreement(h: HeldOut, speed_ms: dict[str, float], tolerance: float = 0.0) -> float:
    """Share of (held-out prompt, speed budget) decisions where the predicted-best option is a measured-best
    one, within ``tolerance`` (the measurement's own noise: options closer than it are not measured apart)."""
    by_target: dict[int, list[tuple[str, float, float]]] = {}
    for t, v, p, m in h.options:
        by_target.setdefault(t, []).append((v, p, m))
    agree = []
    for opts in by_target.values():
        for budget in sorted({speed_ms[v] for v, _, _ in opts}):
            allowed = [o for o in opts if speed_ms[o[0]] <= budget]
            if len(allowed) < 2:
                continue
            guess = max(allowed, key=lambda o: o[1])
            agree.append(guess[2] >= max(o[2] for o in allowed) - tolerance - 1e-9)
    return float(np.mean(agree)) if agree else float("nan")


def summary(h: HeldOut, speed_ms: dict[str, float], tolerance: float = 0.0) -> dict:
    """The issue's four keys for one model's held-out predictions: ``per_variant``'s figures averaged."""
    each = per_variant(h).values()
    pred = np.concatenate([h.predicted[v] for v in h.predicted])
    meas = np.concatenate([h.measured[v] for v in h.predicted])
    return {"mae_ratio_to_mean": float(np.mean([e["mae_ratio_to_mean"] for e in each])),
            "spearman": float(np.mean([e["spearman"] for e in each])),
            "oracle_pick_agreement": oracle_agreement(h, speed_ms, tolerance), "calibration": calibration(pred, meas)}


def calibration(pred: np.ndarray, meas: np.ndarray) -> list[dict]:
    """Deciles of predicted quality: mean predicted against mean measured, and how many in each."""
    edges = np.quantile(pred, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, 9)
    return [{"decile": d + 1, "predicted": float(pred[which == d].mean()), "measured": float(meas[which == d].mean()),
             "n": int((which == d).sum())} for d in range(10) if (which == d).any()]


def world_extra(pairs, scenes: int | None = None, seed: int = 0):
    """``held_out``'s ``extra`` for the embedded world: ``cell_rows`` and ``probe_rows`` labelled by the
    table grouped from the training fold's triples, with no caption of a held-out template (captions
    embedded once, the probe's streams served once)."""
    from orchestrator.sim.ground_truth import table_from_pairs
    from orchestrator.sim.world import embed_prompts, probe_pairs, world_profile, world_rows

    cache: dict[str, np.ndarray] = {}
    found: list[tuple[str, str, int]] = []

    def embed(captions):
        missing = [c for c in captions if c not in cache]
        if missing:
            cache.update(embed_prompts(missing))
        return {c: cache[c] for c in captions}

    def extra(held, triples, fast_rows):
        table = table_from_pairs(pairs, triples=triples, fast_rows=fast_rows)
        if not found:
            found.extend(probe_pairs(world_profile(table)))  # which candidates a cache offers does not depend on the labels
        return world_rows(table, embed, found, scenes, seed, exclude_templates=held)

    return extra


def cell_means(pairs):
    """Row indices -> the mean of each triple's own (kind, what differs, K) cell over every measured
    triple: what a predictor can know at best from a prompt pair's kind and difference, free of the
    per-pair spread; the simulator scores the world with these cells."""
    from orchestrator.sim.ground_truth import kind_of, spec_difference, table_from_pairs
    from tiny_model.world import parse_caption

    table = table_from_pairs(pairs)
    specs = [parse_caption(p) for p in pairs.prompts]
    cells = np.array([table.step_quality(kind_of(specs[t]), spec_difference(specs[t], specs[s]), int(k))
                      for t, s, k in zip(pairs.target, pairs.source, pairs.k)])
    return lambda rows: cells[rows]


def spearman_vs_cells(h: HeldOut) -> float:
    """Per K variant, the rank correlation of the held-out predictions with the rows' cell means, averaged."""
    from scipy.stats import spearmanr

    return float(np.mean([spearmanr(h.predicted[v], h.cells[v]).statistic for v in h.cells]))


def run_pair_eval(pairs_path: Path, profile_path: Path, folds: int = 4, console=None, retest_path: Path | None = None) -> dict:
    """``argus eval-predictor --pairs``: the pair predictor's summary (the JSON object); the
    prompt-only baseline's is printed beside it, and with ``retest_path`` each variant's figures
    beside the labels' own test-retest ceiling (``label_ceiling``). World pairs (captions the grammar
    parses) train with the world's cell-labelled rows, as the simulator's and the front door's predictor does."""
    from orchestrator.profile.pairs import PairTable
    from orchestrator.sim.ground_truth import is_world_pairs

    pairs = PairTable.load(pairs_path)
    try:  # a mismatch fails before the long fit, as one line naming the file
        ceiling = label_ceiling(pairs, PairTable.load(retest_path)) if retest_path is not None else None
    except ValueError as e:
        from orchestrator.sim.inputs import InputFileError

        raise InputFileError(f"{retest_path}: {e}") from None
    prof = Profile.load(profile_path)
    speed = {v: vp.latency_ms[min(vp.latency_ms)] for v, vp in prof.variants.items()}
    world = is_world_pairs(pairs)
    from orchestrator.sim.world import WORLD_FIT

    models = held_out(pairs, folds, extra=world_extra(pairs) if world else None, cell_of=cell_means(pairs) if world else None,
                      fit_kw=WORLD_FIT if world else None)
    out = summary(models["pair"], speed, pairs.noise_of_mean)
    if console:
        base = summary(models["prompt_only"], speed, pairs.noise_of_mean)
        console.print(f"{len(pairs.target)} triples and {len(pairs.fast_prompt)} fast pairs over {len(set(pairs.templates))} templates, "
                      f"{folds} template-grouped folds; seed noise (K=0 quality std across seeds) {pairs.seed_noise_std:.3f}")
        for name, s in (("pair predictor", out), ("prompt + similarity only", base)):
            console.print(f"{name:>24}: MAE / MAE of the mean {s['mae_ratio_to_mean']:.3f}, Spearman {s['spearman']:.3f}, "
                          f"oracle-pick agreement {s['oracle_pick_agreement']:.1%}")
        if models["pair"].cells:
            console.print(f"pair predictor against the rows' cell means (kind, what differs, K; what the simulator scores): "
                          f"Spearman {spearman_vs_cells(models['pair']):.3f}")
        console.print("calibration (pair predictor): " + ", ".join(f"{c['predicted']:.2f}->{c['measured']:.2f}" for c in out["calibration"]))
        if ceiling is not None:
            console.print(f"per variant: the pair predictor on held-out templates | the same triples measured again with other seeds "
                          f"({retest_path.name}): that measurement as a prediction, and the bound it sets on any predictor of the labels")
            held = per_variant(models["pair"])
            for v, c in ceiling.items():
                console.print(f"{v:>5}: MAE ratio {held[v]['mae_ratio_to_mean']:.2f}, Spearman {held[v]['spearman']:+.2f} | "
                              f"retest MAE ratio {c['retest_mae_ratio']:.2f}, Spearman {c['retest_spearman']:+.2f}; "
                              f"bound: MAE ratio {c['ceiling_mae_ratio']:.2f}, correlation {c['ceiling_correlation']:.2f}; "
                              f"label noise {c['label_noise']:.3f} of std {c['label_std']:.3f}")
            console.print("averaged as the JSON is: " + ", ".join(
                f"{name} {np.mean([c[key] for c in ceiling.values()]):.2f}" for name, key in
                (("retest MAE ratio", "retest_mae_ratio"), ("retest Spearman", "retest_spearman"),
                 ("bound MAE ratio", "ceiling_mae_ratio"), ("bound correlation", "ceiling_correlation"))))
            noise = float(np.mean([c["label_noise"] for c in ceiling.values()]))
            console.print(f"oracle-pick agreement within the retest's label noise ({noise:.3f}, against the K=0 seed noise "
                          f"{pairs.noise_of_mean:.3f} the JSON uses): {oracle_agreement(models['pair'], speed, noise):.1%}")
    return out


def per_variant(h: HeldOut) -> dict[str, dict[str, float]]:
    """Each variant's held-out MAE ratio to its training mean and Spearman (``summary`` averages them;
    a constant prediction or label ranks nothing: Spearman 0)."""
    from scipy.stats import spearmanr

    out = {}
    for v in h.predicted:
        p, m, b = (np.array(h.predicted[v]), np.array(h.measured[v]), np.array(h.mean_baseline[v]))
        out[v] = {"mae_ratio_to_mean": float(np.abs(p - m).mean() / max(np.abs(b - m).mean(), 1e-9)),
                  "spearman": float(spearmanr(p, m).statistic) if np.std(p) > 0 and np.std(m) > 0 else 0.0}
    return out


def label_ceiling(pairs, retest) -> dict[str, dict[str, float]]:
    """Per variant, what the labels' seed noise leaves to predict, from a second measurement of the
    same triples with other seeds. ``retest_*``: the second measurement scored as if it were a
    prediction of the first (MAE over the MAE of the first's mean, Spearman). A predictor of each
    triple's expected label has about half that error variance, so ``ceiling_mae_ratio`` (the
    retest's MAE / sqrt 2) and ``ceiling_correlation`` (sqrt of the test-retest correlation) bound
    what any predictor can reach. ``label_noise``: one label's seed noise (std of the difference /
    sqrt 2); ``label_std``: the labels' whole spread."""
    from scipy.stats import pearsonr, spearmanr

    if not (np.array_equal(pairs.target, retest.target) and np.array_equal(pairs.source, retest.source)
            and np.array_equal(pairs.k, retest.k) and pairs.prompts == retest.prompts):
        raise ValueError("the retest table does not hold the same triples: build it with `argus build-pairs --retest FILE` "
                         "and the same --scenes-per-kind as the pairs")
    rows = {f"k{k}": (pairs.relative_quality[pairs.k == k], retest.relative_quality[pairs.k == k]) for k in sorted(set(pairs.k.tolist()))}
    rows["fast"] = (pairs.fast_quality, retest.fast_quality)
    out = {}
    for v, (a, b) in rows.items():
        of_mean = max(np.abs(a - a.mean()).mean(), 1e-9)
        r = float(pearsonr(a, b).statistic) if np.std(a) > 0 and np.std(b) > 0 else 0.0
        out[v] = {"retest_mae_ratio": float(np.abs(a - b).mean() / of_mean), "retest_spearman": float(spearmanr(a, b).statistic),
                  "ceiling_mae_ratio": float(np.abs(a - b).mean() / np.sqrt(2) / of_mean), "ceiling_correlation": float(np.sqrt(max(r, 0.0))),
                  "label_noise": float(np.std(a - b) / np.sqrt(2)), "label_std": float(np.std(a))}
    return out


def run_eval(profile_path: Path, pairs_path: Path | None, folds: int, console=None, labels: tuple | None = None,
             retest: Path | None = None) -> dict:
    """``argus eval-predictor``: the pair predictor on ``pairs_path``, or (None) the per-prompt one on the
    profile; with ``labels`` = (quality table, fast, base, format), the text predictor on that table.
    ``retest``: the same triples measured with other seeds, printed beside the pair predictor where it exists."""
    if labels is not None:
        table, fast, base, fmt = labels
        return run_label_eval(table, fast, base, fmt, folds, console=console)
    if pairs_path is None:
        return run_predictor_eval(profile_path, folds, console)
    if not Path(pairs_path).exists():
        raise FileNotFoundError(f"{pairs_path} does not exist: run `argus build-pairs` first")
    return run_pair_eval(Path(pairs_path), profile_path, folds, console, retest if retest is not None and Path(retest).exists() else None)


# ---------------------------------------------------------------------------------------------
# A deployment's own quality table: fast or heavy, predicted from the prompt's text


def gain_capture_at_half(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Send the half of the prompts with the highest predicted fast quality (smallest loss) to the fast
    model, the rest to the base (quality 1): the quality gained over sending a random half, divided by
    what the oracle's half (by measured quality) gains. 1 is the oracle, 0 is chance."""
    n = len(measured) // 2
    random_half = 1.0 - 0.5 * float(np.mean(1.0 - measured))

    def served(fast_rows: np.ndarray) -> float:
        q = np.ones(len(measured))
        q[fast_rows] = measured[fast_rows]
        return float(q.mean())

    oracle_gain = served(np.argsort(-measured, kind="stable")[:n]) - random_half
    return (served(np.argsort(-predicted, kind="stable")[:n]) - random_half) / oracle_gain if oracle_gain > 0 else float("nan")


def label_summary(predicted: np.ndarray, measured: np.ndarray, mean_baseline: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    return {"spearman": float(spearmanr(predicted, measured).statistic) if np.std(predicted) > 0 else 0.0,
            "mae_ratio_to_mean": float(np.abs(predicted - measured).mean() / max(np.abs(mean_baseline - measured).mean(), 1e-12)),
            "gain_capture_at_half": gain_capture_at_half(predicted, measured), "calibration": calibration(predicted, measured)}


def run_label_eval(table_path: Path, fast: str, base: str, fmt=None, folds: int = 4, seed: int = 0, console=None) -> dict:
    """``argus eval-predictor --quality-table``: the fast model's relative quality per prompt, predicted
    from text in ``folds`` folds split by prompt text. Three predictors on the same folds: the
    project's (``TextQualityPredictor``, TF-IDF featurizer), a plain TF-IDF (word 1-2-grams) + ridge
    (alpha 1), and each fold's training mean."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    from orchestrator.policy.text_predictor import TextQualityPredictor, folds_by_text
    from orchestrator.sim.quality_table import QualityTableFormat, read_quality_table

    labels = read_quality_table(table_path, fmt or QualityTableFormat())
    rows = labels.both(fast, base)
    texts = [labels.prompts[i] for i in rows]
    y = labels.relative_quality(fast, base)[rows]
    fold = folds_by_text(texts, folds, seed)
    pred = {"predictor": np.zeros(len(y)), "baseline_tfidf_ridge": np.zeros(len(y)), "mean": np.zeros(len(y))}
    alphas = []
    for f in range(folds):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        tr_texts, te_texts = [texts[i] for i in tr], [texts[i] for i in te]
        model = TextQualityPredictor.fit(tr_texts, {"fast": y[tr]}, seed=seed)
        alphas.append(model.alphas["fast"])
        pred["predictor"][te] = model.predict_texts(te_texts)["fast"]
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(tr_texts)
        pred["baseline_tfidf_ridge"][te] = Ridge(alpha=1.0).fit(vec.transform(tr_texts), y[tr]).predict(vec.transform(te_texts))
        pred["mean"][te] = y[tr].mean()
    summaries = {name: label_summary(p, y, pred["mean"]) for name, p in pred.items()}
    out = {**summaries["predictor"], "predictor": summaries["predictor"], "baseline_tfidf_ridge": summaries["baseline_tfidf_ridge"],
           "mean": summaries["mean"],
           "setup": {"table": str(table_path), "fast": fast, "base": base, "prompts": len(y), "folds": folds, "split": "by prompt text",
                     "featurizer": "tfidf word 1-2 + char_wb 2-5", "ridge_alpha_per_fold": alphas,
                     "relative_quality": "1 + pct(fast) - pct(base), pct = percentile of the seed-mean logit among all seed-means of the table",
                     "measured_mean": float(y.mean()), "measured_share_at_least_base": float((y >= 1.0).mean())}}
    if console:
        console.print(f"{len(y)} prompts of {table_path} ({fast} against {base}), {folds} folds split by text; "
                      f"relative quality of {fast}: mean {y.mean():.3f}, >= {base} on {100 * (y >= 1).mean():.0f}%")
        for name in ("predictor", "baseline_tfidf_ridge", "mean"):
            s = summaries[name]
            console.print(f"{name:>22}: Spearman {s['spearman']:.3f}, MAE / MAE of the mean {s['mae_ratio_to_mean']:.3f}, "
                          f"gain capture at half {s['gain_capture_at_half']:.3f}")
    return out
