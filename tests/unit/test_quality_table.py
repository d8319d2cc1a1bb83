"""A deployment's quality table: the reader, the split by text, the text predictor, eval-predictor's JSON, the fast/heavy sweep."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from orchestrator.sim.inputs import InputFileError
from orchestrator.policy.text_predictor import folds_by_text
from orchestrator.sim.quality_table import QualityTableFormat, read_quality_table, split_by_text

ANIMALS = ["cat", "dog", "fox", "owl", "elk", "bee", "ant", "cow"]
THINGS = ["on a table", "in a field", "at night", "in the snow", "under a tree", "by a river", "in a city", "on a boat"]


def synthetic_rows(n_prompts: int = 160, seeds: int = 2, seed: int = 0):
    """(prompt, model, seed, p) rows: the fast model loses much on prompts with 'cat' or 'dog', little elsewhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_prompts):
        animal, place = ANIMALS[i % len(ANIMALS)], THINGS[(i // len(ANIMALS)) % len(THINGS)]
        prompt = f"a {animal} {place} number {i}"
        hard = animal in ("cat", "dog")
        for s in range(seeds):
            base = rng.normal(-6.0, 0.3)
            fast = base - (3.0 if hard else 0.2) + rng.normal(0, 0.3)
            for model, logit in (("heavy", base), ("quick", fast)):
                rows.append((prompt, model, s, 1 / (1 + math.exp(-logit))))
    return rows


def write_long(path, rows, opener=open):
    with opener(path, "wt") as f:
        f.write("prompt_id,prompt,model,seed,p_real\n")
        for i, (p, m, s, v) in enumerate(rows):
            f.write(f'{i},"{p}",{m},{s},{v!r}\n')
    return path


def test_long_table_reads_plain_and_gzip(tmp_path):
    rows = synthetic_rows(16)
    a = read_quality_table(write_long(tmp_path / "t.csv", rows))
    b = read_quality_table(write_long(tmp_path / "t.csv.gz", rows, gzip.open))
    assert a.models == ["heavy", "quick"] and len(a.prompts) == 16
    assert (a.seeds == 2).all()
    np.testing.assert_allclose(a.scores, b.scores)
    p = rows[0][3]
    assert a.scores[0, 0] == pytest.approx(np.mean([math.log(r[3] / (1 - r[3])) for r in rows[:4] if r[1] == "heavy"]))
    assert p > 0
    rel = a.relative_quality("quick", "heavy")
    assert np.isfinite(rel).all() and rel.min() >= 0.0 and rel.max() <= 2.0
    assert a.relative_quality("heavy", "heavy") == pytest.approx(np.ones(16))


def test_wide_table(tmp_path):
    path = tmp_path / "w.tsv"
    path.write_text("text\tseed\tA\tB\nx y\t0\t0.5\t0.7\nx y\t1\t0.6\t0.9\nz\t0\t0.1\t0.2\n")
    t = read_quality_table(path, QualityTableFormat(layout="wide", prompt_column="text", score_kind="raw"))
    assert t.models == ["A", "B"] and t.prompts == ["x y", "z"]
    assert t.scores[0].tolist() == pytest.approx([0.55, 0.8])
    assert t.percentiles()[1, 0] < t.percentiles()[0, 1]


@pytest.mark.parametrize("body, message", [
    ("prompt_id,prompt,model,seed,p_real\n0,a cat,heavy,0,zero\n", "t.csv:2: 'p_real' is not a number: 'zero'"),
    ("prompt_id,prompt,model,seed,p_real\n0,a cat,heavy,0,0.1\n1,a dog,heavy,0,1.5\n", "t.csv:3: 'p_real' is a probability score but 1.5"),
    ("prompt_id,prompt,model,seed,p_real\n0,,heavy,0,0.1\n", "t.csv:2: empty 'prompt'"),
    ("prompt_id,prompt,seed,p_real\n0,a cat,0,0.1\n", "no column 'model'"),
    ("prompt_id,prompt,model,seed,p_real\n0,a cat,heavy,0\n", "t.csv:2: missing 'p_real'"),
    ("", "empty file"),
])
def test_bad_rows_get_one_line_errors(tmp_path, body, message):
    path = tmp_path / "t.csv"
    path.write_text(body)
    with pytest.raises(InputFileError) as e:
        read_quality_table(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_model_is_named(tmp_path):
    t = read_quality_table(write_long(tmp_path / "t.csv", synthetic_rows(8)))
    with pytest.raises(InputFileError, match="no model 'sdxl'"):
        t.relative_quality("sdxl", "heavy")


def test_split_by_text_never_puts_a_text_in_both():
    prompts = [f"prompt {i % 50}" for i in range(200)] + ["A  Cat", "a cat", "a cat "]
    train, test = split_by_text(prompts, 0.25, seed=3)
    key = lambda i: " ".join(prompts[i].lower().split())  # noqa: E731
    assert not {key(i) for i in train} & {key(i) for i in test}
    assert len(train) + len(test) == len(prompts) and len(test) > 0
    folds = folds_by_text(prompts, 4, seed=1)
    for text in set(map(key, range(len(prompts)))):
        assert len({folds[i] for i in range(len(prompts)) if key(i) == text}) == 1


def test_text_predictor_reads_the_words_that_matter():
    from orchestrator.policy.text_predictor import TextQualityPredictor

    rows = synthetic_rows(160, seeds=1)
    texts = [r[0] for r in rows if r[1] == "heavy"]
    y = np.array([0.2 if ("cat" in t or "dog" in t) else 0.9 for t in texts])
    model = TextQualityPredictor.fit(texts[:120], {"fast": y[:120]})
    pred = model.predict_texts(texts[120:])["fast"]
    assert np.corrcoef(pred, y[120:])[0, 1] > 0.9
    assert model.predict("a cat somewhere new")["fast"] < model.predict("an owl somewhere new")["fast"]


def test_eval_predictor_json_keys_and_a_real_signal(tmp_path):
    from orchestrator.bench.predictor import gain_capture_at_half, run_label_eval

    path = write_long(tmp_path / "t.csv", synthetic_rows(160))
    out = run_label_eval(path, "quick", "heavy")
    for name in ("predictor", "baseline_tfidf_ridge"):
        assert {"spearman", "mae_ratio_to_mean", "gain_capture_at_half", "calibration"} <= set(out[name])
    assert {"spearman", "mae_ratio_to_mean", "gain_capture_at_half", "calibration"} <= set(out)
    # A quarter of the prompts lose much: the predictor finds them (the oracle's half also picks the seed noise among the rest).
    assert out["gain_capture_at_half"] > 0.35 and out["mae_ratio_to_mean"] < 0.9 and out["spearman"] > 0.4
    assert abs(out["mean"]["gain_capture_at_half"]) < 0.2
    assert all({"decile", "predicted", "measured", "n"} <= set(c) for c in out["calibration"])
    measured = np.array([0.1, 0.9, 0.5, 0.7])
    assert gain_capture_at_half(measured, measured) == pytest.approx(1.0)
    assert gain_capture_at_half(-measured, measured) < 0


def test_fast_heavy_sweep_argus_reads_the_prompt(tmp_path):
    """On a table where the fast model fails cats and dogs only, argus sends those to the base and
    the rest to the fast model; argus-noprompt cannot tell them apart."""
    from orchestrator.bench.sweep import SweepConfig, run_sweep

    path = write_long(tmp_path / "t.csv", synthetic_rows(320))
    points = run_sweep(SweepConfig(quality_table=path, fast="quick", base="heavy", loads=(2.0,), seeds=2, duration_s=3600.0,
                                   out_dir=tmp_path, model_latency_s={"quick": 0.5, "heavy": 27.0}), console=None)
    by = {p["policy"]: p for p in points}
    import orchestrator.sim.labels as labels

    assert set(by) >= {"argus", "argus-noprompt", "clipper-ha", "clipper-ht", "proteus", "oracle"}
    assert by["argus"]["mean_rel_quality"] > by["argus-noprompt"]["mean_rel_quality"] + 0.05
    assert by["argus"]["violation_rate"] <= by["argus-noprompt"]["violation_rate"]
    assert (tmp_path / "sweep_labels.json").exists() and (tmp_path / "sweep_labels_quality.png").exists()
    assert labels.model_latency_ms("sd3.5-large-50step") == {1: 27000.0, 2: 48600.0}
