"""Unit tests of the MILP planner (HiGHS): meets demand when feasible, degrades gracefully when not."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.policy.planner import PlanInput, solve

VARIANTS = ["k0", "k10", "k25", "fast"]
FAMILY = ["base", "base", "base", "fast"]
THROUGHPUT = np.array([1.0, 1.25, 2.0, 3.0])  # images/s per worker


def make(demand, workers=8, quality=None, availability=None, prev=None, classes=2):
    q = quality if quality is not None else np.tile([1.0, 0.95, 0.8, 0.7], (classes, 1))
    a = availability if availability is not None else np.ones((classes, len(VARIANTS)))
    return PlanInput(demand_rps=demand, class_mix=np.full(classes, 1 / classes), quality=q, availability=a, throughput_rps=THROUGHPUT,
                     family=FAMILY, variants=VARIANTS, num_workers=workers, load_time_s={"base": 0.0, "fast": 8.0}, previous_workers=prev,
                     headroom=1.0)


def test_low_load_serves_everything_at_full_quality():
    plan = solve(make(demand=4.0))
    assert plan.status == "Optimal"
    assert np.allclose(plan.fractions[:, 0], 1.0) and plan.shed.max() < 1e-9
    assert plan.expected_quality == pytest.approx(1.0)
    assert plan.workers["base"] >= 4


@pytest.mark.parametrize("demand", [9.0, 12.0, 16.0, 20.0])
def test_meets_demand_when_feasible_with_as_little_approximation_as_needed(demand):
    plan = solve(make(demand))
    assert plan.shed.max() < 1e-6
    assert plan.capacity_rps >= demand - 1e-6
    assert sum(plan.workers.values()) <= 8
    assert 0.7 <= plan.expected_quality < 1.0


def test_quality_falls_monotonically_with_load():
    qualities = [solve(make(d)).expected_quality for d in (4, 9, 12, 16, 20, 24)]
    assert all(a >= b - 1e-9 for a, b in zip(qualities, qualities[1:]))


def test_infeasible_load_sheds_only_the_excess():
    plan = solve(make(demand=40.0))  # all 8 workers on fast: 24 img/s
    assert plan.status == "Optimal"
    served = 40.0 * (1 - plan.shed.mean())
    assert served == pytest.approx(24.0, rel=1e-3)
    assert plan.workers["fast"] == 8


def test_prompt_aware_split_sends_robust_classes_to_the_cheap_variant():
    # Class 0 barely loses quality at k25, class 1 loses a lot: under load class 0 takes k25.
    q = np.array([[1.0, 0.99, 0.97, 0.6], [1.0, 0.9, 0.6, 0.6]])
    plan = solve(make(demand=12.0, quality=q))
    assert plan.fractions[0, 2] > 0.5
    assert plan.fractions[1, 2] < plan.fractions[0, 2]


def test_availability_caps_cache_variants():
    a = np.array([[1.0, 0.2, 0.1, 1.0], [1.0, 0.2, 0.1, 1.0]])
    plan = solve(make(demand=16.0, availability=a))
    assert (plan.fractions[:, 1] <= 0.2 + 1e-9).all() and (plan.fractions[:, 2] <= 0.1 + 1e-9).all()


def test_switching_the_fast_model_has_a_cost():
    q = np.tile([1.0, 0.95, 0.8, 0.8], (2, 1))
    free = solve(make(demand=14.0, quality=q))
    assert free.workers["fast"] > 0  # without a previous plan the fast model helps here
    inp = make(demand=14.0, quality=q, prev={"base": 8, "fast": 0})
    inp.switch_penalty_per_s = 1.0  # loading it (8 s per worker) now costs more than it gains
    assert solve(inp).workers["fast"] == 0
    inp = make(demand=14.0, quality=q, prev=dict(free.workers))
    inp.switch_penalty_per_s = 1.0  # keeping what is loaded is free
    assert solve(inp).workers == free.workers


@pytest.mark.parametrize("workers", [8, 64])
def test_solves_paper_and_fleet_scale_quickly(workers):
    rng = np.random.default_rng(0)
    q = np.hstack([np.ones((16, 1)), rng.uniform(0.6, 1.0, (16, 3))])
    plan = solve(make(demand=workers * 1.8, workers=workers, quality=q, classes=16))
    assert plan.status == "Optimal" and plan.solve_ms < 2000


def test_negligible_classes_do_not_break_the_solver():
    inp = make(demand=12.0, classes=3)
    inp.class_mix = np.array([0.6, 0.4 - 1.2e-9, 1.2e-9])  # a class whose share decayed to ~0
    plan = solve(inp)
    assert plan.status == "Optimal" and plan.shed[:2].max() < 1e-6
