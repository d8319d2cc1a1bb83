"""The simulator's truth for world prompts: measured ground truth keyed by what differs.

A world prompt's attributes are known to the grammar (``tiny_model.world.parse_caption``). The true
quality of serving prompt P at step-skip level K from a cached source S is the seed-averaged,
ground-truth-scored relative quality measured on the shipped weights (``argus build-pairs``,
``tiny_model.pair_data``) for P's kind, for what differs between P and S (``spec_difference``), and
for K; the fast model's is measured per kind. Each cell carries its count and standard error.

Real prompts outside the world have no ground truth: their truth at K is borrowed from the world
pairs at that K whose prompt-source similarity is nearest (``by_similarity``: the mean over a
similarity bin), and the fast model's from the mean over every measured world prompt.

The same measurements bound the cache's similarity threshold per K from below (``calibrate_thresholds``):
the lowest similarity from which the measured quality stays at or above a floor, made monotone in K
as NIRVANA's published thresholds are (``orchestrator.sim.reuse`` sets the thresholds themselves).
"""

from __future__ import annotations

import numpy as np

from orchestrator.policy.pair_predictor import QUALITY_FLOOR  # the thresholds keep what argus offers past them
from orchestrator.profile.ground_truth import KINDS, Cell, GroundTruthTable
from tiny_model.world import SceneSpec, parse_caption

SIMILARITY_BINS = 20
"""Quantile bins of prompt-source similarity per K, for real prompts' borrowed truth."""


def kind_of(spec: SceneSpec) -> str:
    return "counting" if spec.counting else {1: "simple", 2: "medium"}.get(len(spec.objects), "hard")


def spec_difference(target: SceneSpec, source: SceneSpec) -> str:
    """Which kind of attribute differs between two parsed captions (``DIFFERENCE_CLASSES``)."""
    if target == source:
        return "none"
    found: set[str] = set()
    if target.counting != source.counting or (len(target.objects) != len(source.objects) and not target.counting):
        return "several"
    if len(target.objects) != len(source.objects):
        found.add("count")
    for a, b in zip(target.objects, source.objects):
        for attr, name in (("shape", "shape"), ("color", "colour"), ("size", "size")):
            if getattr(a, attr) != getattr(b, attr):
                found.add(name)
        if a.position != b.position and not target.counting:
            found.add("position")
    if target.background != source.background:
        found.add("background")
    return found.pop() if len(found) == 1 else ("several" if found else "none")


def truth(table: GroundTruthTable, target: str, source: str | None, k: int) -> float:
    """Relative quality of world prompt ``target`` served at K from the latent cached for ``source``
    (K=0: 1; NaN when either is not a world prompt: the caller borrows by similarity)."""
    if k == 0:
        return 1.0
    a, b = parse_caption(target), parse_caption(source) if source is not None else None
    if a is None or b is None:
        return float("nan")
    return table.step_quality(kind_of(a), spec_difference(a, b), k)


def is_world_pairs(pairs) -> bool:
    """Whether every prompt of a ``PairTable`` is a caption of the embedded world's grammar (so its
    kind and what differs can be read, and the world's cell-labelled rows apply)."""
    return all(parse_caption(p) is not None for p in pairs.prompts)


def table_from_pairs(pairs, floor: float = QUALITY_FLOOR, bins: int = SIMILARITY_BINS, triples: np.ndarray | None = None,
                     fast_rows: np.ndarray | None = None) -> GroundTruthTable:
    """Group a ``PairTable``'s triples (or only the rows ``triples`` and ``fast_rows``) by (kind, what differs, K)."""
    if triples is not None or fast_rows is not None:
        pairs = pairs.subset(triples, fast_rows)
    specs = [parse_caption(p) for p in pairs.prompts]
    kinds = np.array([kind_of(specs[i]) for i in pairs.target])
    diffs = np.array([spec_difference(specs[t], specs[s]) for t, s in zip(pairs.target, pairs.source)])
    q = np.asarray(pairs.relative_quality, np.float64)
    step = {}
    for key in sorted(set(zip(kinds, diffs, pairs.k.tolist()))):
        m = (kinds == key[0]) & (diffs == key[1]) & (pairs.k == key[2])
        step[(str(key[0]), str(key[1]), int(key[2]))] = Cell.of(q[m])
    fast_kinds = np.array([kind_of(specs[i]) for i in pairs.fast_prompt])
    fast = {k: Cell.of(pairs.fast_quality[fast_kinds == k]) for k in KINDS if (fast_kinds == k).any()}
    sim = pairs.similarity
    sim_bins = {}
    for k in sorted(set(pairs.k.tolist())):
        m = pairs.k == k
        s, v = sim[m], q[m]
        edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)[1:]))
        idx = np.minimum(np.searchsorted(edges, s), len(edges) - 1)
        means = np.array([v[idx == i].mean() if (idx == i).any() else np.nan for i in range(len(edges))])
        means = np.where(np.isnan(means), np.nanmean(v), means)
        sim_bins[int(k)] = (edges.astype(np.float32), means.astype(np.float32))
    return GroundTruthTable(step, fast, sim_bins, calibrate_thresholds(sim, q, pairs.k, floor))


def calibrate_thresholds(similarity: np.ndarray, quality: np.ndarray, k: np.ndarray, floor: float = QUALITY_FLOOR) -> dict[int, float]:
    """Per K, the lowest similarity at which the measured quality stays >= ``floor``: quality (capped
    at 1) is fitted as a non-decreasing function of similarity (isotonic regression, scikit-learn: it
    pools neighbouring pairs until the curve is monotone, so seed noise in one pair cannot set the
    threshold), and the threshold is the lowest similarity where the fit reaches the floor; then a
    running maximum over K, so a larger K never accepts a less similar source. A K whose fit never
    reaches the floor gets 1 (exact repeats only)."""
    from sklearn.isotonic import IsotonicRegression

    out: dict[int, float] = {}
    for level in sorted(set(np.asarray(k).tolist())):
        m = np.asarray(k) == level
        s, q = similarity[m].astype(np.float64), np.minimum(quality[m], 1.0).astype(np.float64)
        fit = IsotonicRegression(increasing=True).fit(s, q).predict(s)
        ok = fit >= floor
        out[int(level)] = float(s[ok].min()) if ok.any() else 1.0
    running = -np.inf
    for level in sorted(out):
        running = max(running, out[level])
        out[level] = float(running)
    return out


CELL_SCENES = 3000
"""World scenes whose cached sources are labelled by the measured cells to train the pair predictor on:
about 25,000 (prompt, source) pairs at five K. On templates it never saw (`argus eval-predictor`), the
measured triples (stage 3's) alone gave a MAE 1.53x the variant mean's and a Spearman of 0.07 (about 0.03
against the cell means); with these rows, 0.99x, 0.06, and 0.40 against the cell means. 8,000 scenes or a (128, 64) network measured no better on fresh
captions (Spearman at K=25 0.70 and 0.68 against 0.75)."""


def cell_rows(table: GroundTruthTable, embed, scenes: int = CELL_SCENES, seed: int = 0, exclude_templates: frozenset[str] = frozenset()):
    """Training rows for the pair predictor: world captions and the sources a cache would offer them
    (``tiny_model.pair_data.cached_sources``: one per kind of difference, two double ones, an unrelated
    scene), each labelled with the measured mean of its (kind, what differs, K) cell, and each caption's
    fast-model quality with its kind's. The measured triples are too few and too noisy (four seeds,
    per-pair spread 0.14-0.27) for a 64-d embedding model to learn from alone; the cell means are the
    same measurements averaged over 6-55 pairs each. The predictor still sees only embeddings: it has
    to read the kind and the difference from them. ``exclude_templates``: no caption of these (a held-out
    fold's). ``embed``: captions -> unit embeddings (``orchestrator.sim.world.embed_prompts``: the
    deployed text encoder)."""
    import random

    from orchestrator.policy.pair_predictor import PairRows
    from tiny_model.pair_data import cached_sources, template_of
    from tiny_model.world import sample_scene

    rng = random.Random(seed)
    pairs, targets = [], []
    for i in range(scenes):
        scene = sample_scene(rng, KINDS[i % len(KINDS)])
        if template_of(scene.caption()) in exclude_templates:
            continue
        targets.append(scene.caption())
        pairs += [(scene.caption(), src.caption()) for _, src in cached_sources(scene, rng, 2)]
    emb = embed(sorted({c for pair in pairs for c in pair}))
    spec = {c: parse_caption(c) for c in emb}
    levels = sorted({k for (_, _, k) in table.step})
    t = np.array([emb[a] for a, _ in pairs] * len(levels), np.float32)
    s = np.array([emb[b] for _, b in pairs] * len(levels), np.float32)
    k = np.repeat(np.array(levels), len(pairs))
    q = np.array([table.step_quality(kind_of(spec[a]), spec_difference(spec[a], spec[b]), level) for level in levels for a, b in pairs],
                 np.float32)
    fast_t = np.array([emb[c] for c in targets], np.float32)
    fast_q = np.array([table.fast_quality(kind_of(spec[c])) for c in targets], np.float32)
    return PairRows(t, s, k, q, fast_t, fast_q)


def write_ground_truth(pairs_path, profiles: list, docs_path, scenes_per_kind: int, seeds: int, generate: bool = True, log=print):
    """``argus build-pairs``: generate the triples (unless ``generate`` is False: reuse ``pairs_path``),
    group them into the table, write it and its calibrated thresholds into every profile, and the
    table for people into ``docs_path``."""
    import dataclasses

    from orchestrator.profile.schema import Profile
    from orchestrator.profile.pairs import PairTable
    from tiny_model.pair_data import PairDataConfig, write_pairs

    if generate:
        write_pairs(PairDataConfig(scenes_per_kind=scenes_per_kind, seeds=seeds), pairs_path, log=log)
    table = table_from_pairs(PairTable.load(pairs_path))
    table.source = f"`argus build-pairs --scenes-per-kind {scenes_per_kind} --seeds {seeds}` ({pairs_path.name}) on the shipped weights"
    for path in profiles:
        dataclasses.replace(Profile.load(path), ground_truth=table).save(path)
        log(f"{path}: ground-truth table (quality thresholds {table.quality_thresholds}; `argus calibrate-reuse --write` sets the cache's)")
    docs_path.write_text("# The simulator's ground truth, keyed by what differs (`argus build-pairs`)\n\n"
                         f"{table.source}. Each cell: mean relative quality of resuming a prompt of that kind at K from a cached "
                         "source that differs in that way (count of (prompt, source) pairs, standard error); each pair's quality is "
                         "seed-averaged ground truth over the prompt's own K=0 (capped at 1.5). Quality thresholds: per K, the lowest "
                         f"similarity from which an isotonic fit of quality (capped at 1) on similarity stays >= {QUALITY_FLOOR}, made "
                         "monotone in K.\n\n" + table.markdown())
    log(table.markdown())
    return table
