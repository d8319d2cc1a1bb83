"""The synthetic world: deterministic grammar and renderer, and a ground-truth check that works."""

from __future__ import annotations

import random

import numpy as np
import pytest

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


def _wrong(scene: Scene, what: str, rng: random.Random) -> Scene:
    """The same scene with one attribute deliberately wrong."""
    import dataclasses

    from tiny_model.world import BACKGROUNDS, COLORS, COUNT_SLOTS, MULTI_SLOTS

    objs = list(scene.objects)
    used = {o.color for o in objs} | {scene.background}
    if what == "colour":
        objs[0] = dataclasses.replace(objs[0], color=rng.choice([c for c in COLORS if c not in used]))
        if scene.counting:
            objs = [dataclasses.replace(o, color=objs[0].color) for o in objs]
    elif what == "position":
        free = [p for p in ("center", *MULTI_SLOTS) if p not in {o.position for o in objs} and p != "center" or len(objs) == 1]
        objs[0] = dataclasses.replace(objs[0], position=rng.choice([p for p in free if p != objs[0].position]))
    elif what == "count":
        n = 3 if len(objs) == 2 else 2
        objs = [dataclasses.replace(objs[0], position=slot) for slot in COUNT_SLOTS[n]]
    elif what == "background":
        return dataclasses.replace(scene, background=rng.choice([b for b in BACKGROUNDS if b not in used]))
    return dataclasses.replace(scene, objects=tuple(objs))


def test_ground_truth_passes_renders_of_every_kind():
    rng = random.Random(21)
    for kind in ("simple", "medium", "hard", "counting"):
        ok = [ground_truth_check(render(s), s.caption())["all"] for s in (sample_scene(rng, kind) for _ in range(100))]
        assert np.mean(ok) >= 0.98, kind


@pytest.mark.parametrize(
    "what,kinds",
    [("colour", ("simple", "medium", "hard", "counting")), ("position", ("medium", "hard")), ("count", ("counting",)),
     ("background", ("simple", "medium", "hard", "counting"))],
)
def test_ground_truth_catches_deliberately_wrong_images(what, kinds):
    rng = random.Random(22)
    attribute = {"colour": "color", "position": "position", "count": "count", "background": "background"}[what]
    caught = []
    for kind in kinds:
        for _ in range(40):
            scene = sample_scene(rng, kind)
            if what == "background" and not scene.background_said:
                continue
            got = ground_truth_check(render(_wrong(scene, what, rng)), scene.caption())
            caught.append(got["all"] == 0.0 and got[attribute] < 1.0)
    assert len(caught) >= 30 and np.mean(caught) >= 0.95, (what, np.mean(caught))
