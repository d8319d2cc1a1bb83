"""The synthetic world: deterministic grammar and renderer, and a ground-truth check that works."""

from __future__ import annotations

import random

import numpy as np

from tiny_model.world import Scene, SceneObject, all_captions_sample, ground_truth_check, parse_caption, render, sample_scene


def test_grammar_is_deterministic():
    assert all_captions_sample(50, seed=3) == all_captions_sample(50, seed=3)
    assert all_captions_sample(50, seed=3) != all_captions_sample(50, seed=4)


def test_renderer_is_deterministic():
    scene = sample_scene(random.Random(1), "hard")
    assert np.array_equal(np.asarray(render(scene)), np.asarray(render(scene)))
    assert np.asarray(render(scene)).shape == (32, 32, 3)


def test_difficulty_classes_have_the_promised_structure():
    rng = random.Random(0)
    simple = [sample_scene(rng, "simple") for _ in range(50)]
    hard = [sample_scene(rng, "hard") for _ in range(50)]
    assert all(len(s.objects) == 1 for s in simple)
    assert all(len(s.objects) == 3 and " and " in s.caption() and s.background_said for s in hard)
    # Attribute binding: three distinct colours, each bound to a named position.
    assert all(len({o.color for o in s.objects}) == 3 and all(o.position_said for o in s.objects) for s in hard)


def test_every_caption_parses_back():
    rng = random.Random(2)
    for _ in range(300):
        scene = sample_scene(rng)
        spec = parse_caption(scene.caption())
        assert spec is not None and len(spec.objects) == len(scene.objects)
    assert parse_caption("a photo of an astronaut riding a horse") is None


def test_ground_truth_check_accepts_renders_and_rejects_mismatches():
    rng = random.Random(5)
    ok = [ground_truth_check(render(s), s.caption())["all"] for s in (sample_scene(rng) for _ in range(200))]
    assert np.mean(ok) > 0.95
    red_left = Scene((SceneObject("circle", "red", "large", "left", True, True),), "gray", True)
    image = render(red_left)
    assert ground_truth_check(image, "a large red circle on the left on a gray background")["all"] == 1.0
    assert ground_truth_check(image, "a large blue circle on the left on a gray background")["color"] == 0.0
    assert ground_truth_check(image, "a large red circle on the right on a gray background")["position"] == 0.0
    assert ground_truth_check(image, "a large red square on the left on a gray background")["shape"] == 0.0
    assert ground_truth_check(image, "a large red circle on the left on a black background")["background"] == 0.0
