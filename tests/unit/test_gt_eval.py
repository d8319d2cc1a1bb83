"""The seed-averaged ground-truth evaluation: controlled cached sources and the JSON it writes.
A fake pipeline that draws exactly what a caption says stands in for the model (unit test)."""

from __future__ import annotations

import random

import numpy as np
import torch

from tiny_model.gt_eval import DIFFERENCES, KINDS, LEVELS, GTEvalConfig, perturb, run_gt_eval
from tiny_model.world import parse_caption, render, sample_scene


def test_a_source_differs_in_exactly_the_named_kind_of_attribute():
    """perturb changes one kind of attribute, as the simulator's ground-truth table classifies it."""
    from orchestrator.sim.ground_truth import spec_difference

    rng = random.Random(3)
    seen = set()
    named = {"none": {"none"}, "colour": {"colour"}, "size": {"size"}, "position": {"position"}, "background": {"background"},
             "count_or_shape": {"count", "shape"}}
    for kind in KINDS:
        for _ in range(30):
            scene = sample_scene(rng, kind)
            a = parse_caption(scene.caption())
            for d in DIFFERENCES:
                src = perturb(scene, d, rng)
                if src is None:
                    continue
                seen.add(d)
                assert spec_difference(a, parse_caption(src.caption())) in named[d], (d, scene.caption(), src.caption())
    assert seen == set(DIFFERENCES)


def test_spec_difference_names_one_kind_or_several():
    from orchestrator.sim.ground_truth import spec_difference

    def diff(a, b):
        return spec_difference(parse_caption(a), parse_caption(b))

    assert diff("a red circle on the left", "a red circle on the left") == "none"
    assert diff("a red circle on the left", "a blue circle on the left") == "colour"
    assert diff("a red circle on the left", "a red circle on the right") == "position"
    assert diff("a red circle on the left", "a red square on the left") == "shape"
    assert diff("a small red circle", "a large red circle") == "size"
    assert diff("two red circles", "three red circles") == "count"
    assert diff("a red circle on a gray background", "a red circle on a blue background") == "background"
    assert diff("a red circle on the left", "a blue square on the left") == "several"
    assert diff("a red circle", "a red circle on the left and a blue square on the right") == "several"


class PerfectPipe:
    """Draws each caption exactly (a model with no errors): every check passes, nothing is lost by reuse."""

    def generate(self, prompts, seeds, *, k=0, start_latents=None, unet="unet", num_inference_steps=50, on_step=None):
        if on_step is not None:
            for step in range(num_inference_steps):
                on_step(step, torch.zeros(len(prompts), 4, 8, 8))
        return np.stack([np.asarray(render(_SCENES[p])) for p in prompts])


_SCENES: dict[str, object] = {}
"""Caption -> the scene it came from (filled by the test)."""


def test_the_json_has_the_documented_keys_and_a_perfect_model_scores_one(monkeypatch):
    # Index every caption the evaluation can ask for: its prompts and their perturbed sources.
    cfg = GTEvalConfig(prompts_per_kind=2, seeds=4, batch=8, seed=5)
    rng = random.Random(cfg.seed)
    scenes = [sample_scene(rng, kind) for kind in KINDS for _ in range(cfg.prompts_per_kind)]
    for s in scenes:
        _SCENES[s.caption()] = s
    import tiny_model.gt_eval as gt

    real_perturb = gt.perturb

    def recording(scene, d, r):
        src = real_perturb(scene, d, r)
        if src is not None:
            _SCENES[src.caption()] = src
        return src

    monkeypatch.setattr(gt, "perturb", recording)
    out = run_gt_eval(cfg, pipe=PerfectPipe(), log=lambda *_: None)
    assert set(out) >= {"seed_noise_std", "variants", "step_skip_by_difference"}
    assert set(out["variants"]) == {"k0", *[f"k{k}" for k in LEVELS], "fast"}
    for v, row in out["variants"].items():
        assert set(row) == {*KINDS, "rel_quality_std_across_prompts"}
        for kind in KINDS:
            assert set(row[kind]) == {"gt_all_correct", "gt_attr_acc", "rel_quality_mean", "rel_quality_p10", "rel_quality_p90"}
            assert row[kind]["gt_all_correct"] == 1.0 and row[kind]["rel_quality_mean"] == 1.0
    assert set(out["step_skip_by_difference"]) == {f"k{k}" for k in LEVELS}
    assert set(out["step_skip_by_difference"]["k25"]) == set(DIFFERENCES)
    assert out["seed_noise_std"] == 0.0
    from tiny_model.gt_eval import gt_markdown

    text = gt_markdown(out)
    assert "| k0 | 100% / 1.00 / 1.00" in text and "| k25 |" in text


def test_cell_rows_label_world_pairs_by_their_measured_cell_and_skip_held_out_templates():
    """The pair predictor's extra rows: every (prompt, source, K) row carries its (kind, what differs,
    K) cell's measured mean, every fast row its kind's; no caption of an excluded template appears."""
    from orchestrator.profile.ground_truth import Cell, GroundTruthTable
    from orchestrator.sim.ground_truth import cell_rows, kind_of, spec_difference
    from tiny_model.pair_data import template_of

    diffs = ("none", "colour", "size", "position", "background", "shape", "count", "several")
    step = {(k, d, lv): Cell(0.5 + 0.01 * i + lv / 100, 4, 0.01) for i, (k, d) in enumerate((k, d) for k in KINDS for d in diffs) for lv in (5, 25)}
    table = GroundTruthTable(step, {k: Cell(0.1 * (i + 1), 4, 0.01) for i, k in enumerate(KINDS)}, {}, {})
    codes: dict[str, np.ndarray] = {}

    def embed(captions):  # a distinct unit vector per caption, remembered
        for c in captions:
            codes.setdefault(c, np.random.default_rng(len(codes)).normal(size=8).astype(np.float32))
            codes[c] /= np.linalg.norm(codes[c])
        return {c: codes[c] for c in captions}

    held = frozenset({"a {colour} {shape}"})
    rows = cell_rows(table, embed, scenes=40, seed=3, exclude_templates=held)
    by_vec = {v.tobytes(): c for c, v in codes.items()}
    assert len(rows.target) == len(rows.source) == len(rows.k) == len(rows.quality) and set(rows.k.tolist()) == {5, 25}
    for t, s, k, q in zip(rows.target, rows.source, rows.k, rows.quality):
        a, b = parse_caption(by_vec[t.tobytes()]), parse_caption(by_vec[s.tobytes()])
        assert q == np.float32(table.step_quality(kind_of(a), spec_difference(a, b), int(k)))
        assert template_of(by_vec[t.tobytes()]) not in held
    for t, q in zip(rows.fast_target, rows.fast_quality):
        assert q == np.float32(table.fast[kind_of(parse_caption(by_vec[t.tobytes()]))].mean)


def test_live_ground_truth_scores_each_policys_own_answer():
    """Every policy replays the same request ids: one policy's answer must not score another's
    (keyed by request id alone, every policy scored the last policy's images)."""
    import random

    from orchestrator.bench.live import LiveRecord, ground_truth_quality
    from tiny_model.world import render, sample_scene

    scene = sample_scene(random.Random(3), "simple")
    right = np.asarray(render(scene).convert("RGB"))
    wrong = np.zeros_like(right) + 127
    recs = [LiveRecord(p, "r0", 0.0, 1.0, scene.caption(), 0, variant=v) for p, v in (("clipper-ha", "k0"), ("clipper-ht", "fast"))]
    images = {("clipper-ha", "r0"): right, ("clipper-ht", "r0"): wrong}
    q = ground_truth_quality(recs, images, {"r0": right})
    assert q[("clipper-ha", "r0")] == 1.0 and q[("clipper-ht", "r0")] < 0.7
