"""What the simulator knows about a prompt.

``CacheWorld`` (every bench's world): each prompt is embedded with the deployed text encoder and
looked up in a simulated cache (``orchestrator.sim.cache``) that holds what was actually served and
warmed; the truth of serving it at K from a cached source is the measured ground truth for its kind
and for what differs between the two (``orchestrator.sim.ground_truth``; real prompts borrow it by
similarity), the fast model's the measured truth for its kind.

``TableWorld`` (the parity test's fixed world, and the base of the quality-table scenario's
``LabelWorld``): a row of the profile's quality table.

Each prompt maps to a row (stable per prompt text, so reuse in the stream is reuse here): the
row's embedding is what the text encoder would return, its measured similarity per K what the
cache would find, its relative quality per variant the truth that gets scored. A prompt seen
before in the stream finds its own latents (similarity 1, and resuming its own latent reproduces
its k0 image). True relative quality is capped at 1: a measured ratio above 1 is scorer noise.

"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import numpy as np

from orchestrator.policy.predictor import EXACT_MATCH
from orchestrator.sim.ground_truth import kind_of, truth
from orchestrator.profile.schema import Profile


@dataclasses.dataclass(frozen=True)
class PromptView:
    embedding: np.ndarray
    similarity: dict[str, float]
    """Best cached similarity per K variant (what a cache lookup would return)."""
    truth: dict[str, float]
    """True relative quality per variant (K variants: resumed from the most similar source)."""
    candidates: object | None = None
    """The cache's sources per K variant (``SourceCandidates``), for a policy that ranks them."""


class World:
    """What the simulator asks of a world besides ``observe``: the truth once a source is chosen,
    and the cache's update once a generation is served. Worlds without a cache ignore both."""

    def commit(self, prompt: str, variant: str, source: int | None, view: PromptView) -> float:
        """The request is served at ``variant`` from cache entry ``source`` (None: the most similar); its true quality."""
        return view.truth[variant]

    def served(self, prompt: str, variant: str, now_s: float) -> None:
        """The generation finished: a cache keeps its latents."""

    def best_truth(self, prompt: str, view: PromptView) -> dict[str, float]:
        """Per K variant, the true quality of the best source among the cache's candidates, whatever
        its similarity (the oracle's choice; a policy may resume from any candidate)."""
        return {}


class TableWorld(World):
    def __init__(self, profile: Profile):
        self.profile = profile
        self.seen: set[str] = set()

    def row(self, prompt: str) -> int:
        return int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16) % len(self.profile.quality.prompts)

    def observe(self, prompt: str, now_s: float | None = None) -> PromptView:
        """The prompt's view at its arrival; later arrivals of the same text are repeats."""
        table = self.profile.quality
        row = self.row(prompt)
        repeat = prompt in self.seen
        self.seen.add(prompt)
        sims, truth = {}, {"k0": 1.0}
        for v, vp in self.profile.variants.items():
            if v == "k0":
                continue
            if vp.needs_cache:
                sims[v] = 1.0 if repeat else float(table.similarity[v][row])
                truth[v] = self.cached_truth(v, sims[v], row)
            else:
                truth[v] = min(1.0, float(table.relative_quality[v][row]))
        return PromptView(table.embeddings[row], sims, truth)

    def cached_truth(self, variant: str, similarity: float, row: int) -> float:
        """True quality of a K variant resumed from a latent of this similarity, as measured on ``row``.
        The same prompt's latent (an exact match: a repeat, or a profiled neighbour with the same text)
        gives a full-quality image of it; the profile's ratio there is the scorer's seed noise, capped."""
        if similarity >= EXACT_MATCH:
            return 1.0
        return min(1.0, float(self.profile.quality.relative_quality[variant][row]))


def embed_prompts(prompts: list[str], batch: int = 256) -> dict[str, np.ndarray]:
    """Unit-norm pooled embeddings of the distinct prompts with the deployed (embedded) text encoder, in-process."""
    import torch

    from tiny_model.models import load_clip, load_tokenizer
    from tiny_model.pipeline import encode_prompts

    tokenizer = load_tokenizer()
    clip = load_clip(tokenizer=tokenizer)
    unique = list(dict.fromkeys(prompts))
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for i in range(0, len(unique), batch):
            chunk = unique[i : i + batch]
            pooled = encode_prompts(clip, tokenizer, chunk)[1].numpy().astype(np.float32)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True) + 1e-12
            out.update(zip(chunk, pooled))
    return out


class CacheWorld(World):
    """Prompts looked up in a simulated cache of what was served; truth from measured ground truth."""

    def __init__(self, profile: Profile, embeddings: dict[str, np.ndarray], warm: tuple[str, ...] = (), cache_cfg=None, tenant: str = "",
                 similarity_map=None):
        """``similarity_map``: raw cosine -> the profile's similarity scale, for keys that are not the deployed
        encoder's (real prompts' lexical stand-in, ``orchestrator.sim.lexical``); None: the identity."""
        from orchestrator.sim.cache import SimCache, SimCacheConfig

        if profile.ground_truth is None:
            raise ValueError("the profile carries no ground-truth table (argus build-pairs writes it; see README)")
        self.profile, self.gt, self.embeddings, self.tenant = profile, profile.ground_truth, embeddings, tenant
        self.now_s = 0.0
        dim = next(iter(embeddings.values())).shape[0]
        self.cache = SimCache(profile, dim, cache_cfg or SimCacheConfig(), clock=lambda: self.now_s)
        self.levels = {v: vp.k for v, vp in profile.variants.items() if vp.needs_cache}
        self.fast = [v for v, vp in profile.variants.items() if v != "k0" and not vp.needs_cache]
        self.lookups: dict[str, object] = {}
        self.mapped = similarity_map is not None
        self.similarity_map = similarity_map or (lambda x: x)
        for prompt in warm:
            self.cache.insert(prompt, embeddings[prompt], 0, tenant)

    def _truth(self, prompt: str, variant: str, source: str | None, similarity: float) -> float:
        k = self.levels[variant]
        if source is None:
            return 0.0
        q = truth(self.gt, prompt, source, k)
        return min(1.0, q if np.isfinite(q) else self.gt.by_similarity(k, similarity))

    def observe(self, prompt: str, now_s: float | None = None) -> PromptView:
        from tiny_model.world import parse_caption


        if now_s is not None:
            self.now_s = now_s
        emb = self.embeddings[prompt]
        found = self.cache.lookup(emb, self.tenant)
        if self.mapped:
            m = np.vectorize(self.similarity_map, otypes=[np.float32])
            found = dataclasses.replace(found, similarity={v: self.similarity_map(x) for v, x in found.similarity.items()},
                                        candidates=dataclasses.replace(found.candidates, similarity={v: m(x) for v, x in found.candidates.similarity.items()}))
        self.lookups[prompt] = found
        truth = {"k0": 1.0}
        for v in self.levels:
            entry = found.entry[v]
            truth[v] = self._truth(prompt, v, self.cache.prompt_of.get(entry) if entry >= 0 else None, found.similarity[v])
        spec = parse_caption(prompt)
        for v in self.fast:
            truth[v] = min(1.0, self.gt.fast_quality(kind_of(spec) if spec is not None else None))
        return PromptView(emb, found.similarity, truth, found.candidates)

    def commit(self, prompt: str, variant: str, source: int | None, view: PromptView) -> float:
        if variant not in self.levels:
            return view.truth[variant]
        found = self.lookups[prompt]
        entry = found.entry[variant] if source is None or source < 0 else source
        src = self.cache.fetch(entry, self.levels[variant], self.tenant)
        if src is None:  # evicted since the lookup: live, the generation falls back to k0
            return 1.0
        sim = self.similarity_map(float(np.dot(self.embeddings[prompt], self.cache.store.entry_embedding(entry))))
        return self._truth(prompt, variant, src, sim)

    def best_truth(self, prompt: str, view: PromptView) -> dict[str, float]:
        cands = self.lookups[prompt].candidates
        out = {}
        for v, ids in cands.ids.items():
            found = [self._truth(prompt, v, self.cache.prompt_of.get(int(e)), float(s)) for e, s in zip(ids, cands.similarity[v]) if e >= 0]
            if found:
                out[v] = max(found)
        return out

    def served(self, prompt: str, variant: str, now_s: float) -> None:
        self.now_s = now_s
        if variant == "k0" or variant in self.levels:
            self.cache.insert(prompt, self.embeddings[prompt], self.levels.get(variant, 0), self.tenant)


PROBE_SEEDS = tuple(range(100, 130))
"""Prompt-stream seeds whose cache candidates train the pair predictor: none a bench replays (the sweep's are 0..seeds-1)."""
PROBE_REQUESTS = 1500
"""Requests per probe stream, after the benches' warm prompts."""
PROBE_ROWS = 200_000
"""Probe rows drawn for a fit (of about 900,000). 441,000 measured little better on held-out streams' candidates
(MAE over the per-K mean's at K=25 0.39 against 0.43; argus at 2x +0.0006) for twice the fit time."""
WORLD_FIT = {"hidden": (128, 64), "alpha": 0.01}
"""The world predictor's network and weight decay. With the probe rows, what it must learn is the cells' function of a
caption pair, seen densely: on held-out streams' candidates (seeds 0-4 at 2x), MAE over the per-K mean's at K=15/20/25
0.44 / 0.38 / 0.43 against 0.60 / 0.57 / 0.66 for (64,) at alpha 0.1 and 0.73 / 0.78 / 0.85 at alpha 1 (the fit for
measured triples alone)."""


def probe_pairs(profile: Profile, seeds: tuple[int, ...] = PROBE_SEEDS, requests: int = PROBE_REQUESTS) -> list[tuple[str, str, int]]:
    """(prompt, cached source, K) for every candidate the cache offers along the default world
    stream, as the router meets them. The probe's candidates are not the sources ``cell_rows``
    draws: a cache holds near repeats and edits of the stream's own prompts, at the K they were
    served, and the predictor trained only on drawn sources over-rated the one argus picks (served
    K=25 answers predicted 0.959, kept 0.914). Each stream is replayed through the simulated cache,
    every request served as NIRVANA's thresholds allow (the largest K on offer, else k0), so the
    rows depend on no policy and on no earlier fit."""
    from orchestrator.sim.workload import WARM_PROMPTS, world_prompt_stream

    found: list[tuple[str, str, int]] = []
    for seed in seeds:
        stream = world_prompt_stream(WARM_PROMPTS + requests, seed=seed)
        world = CacheWorld(profile, embed_prompts(stream), warm=tuple(stream[:WARM_PROMPTS]))
        for i, prompt in enumerate(stream[WARM_PROMPTS:]):
            view = world.observe(prompt, now_s=float(i))
            for v, ids in view.candidates.ids.items():
                found += [(prompt, world.cache.prompt_of[int(e)], world.levels[v]) for e in ids[ids >= 0] if int(e) in world.cache.prompt_of]
            offered = [v for v in profile.available_variants(view.similarity) if v in world.levels]
            world.served(prompt, max(offered, key=world.levels.get, default="k0"), float(i))
    return found


def probe_rows(table, embed, found: list[tuple[str, str, int]], rows: int = PROBE_ROWS, seed: int = 0,
               exclude_templates: frozenset[str] = frozenset()):
    """``rows`` of ``probe_pairs``' candidates (none of whose captions is of ``exclude_templates``),
    labelled with the measured mean of their (kind, what differs, K) cell in ``table``, as embeddings."""
    from orchestrator.policy.pair_predictor import PairRows
    from tiny_model.pair_data import template_of

    if exclude_templates:
        found = [f for f in found if template_of(f[0]) not in exclude_templates and template_of(f[1]) not in exclude_templates]
    pick = np.random.default_rng(seed).choice(len(found), min(rows, len(found)), replace=False)
    chosen = [found[i] for i in sorted(pick)]
    emb = embed(sorted({c for t, s, _ in chosen for c in (t, s)}))
    quality = np.array([min(1.0, truth(table, t, s, k)) for t, s, k in chosen], np.float32)
    ok = np.isfinite(quality)
    dim = len(next(iter(emb.values())))
    return PairRows(np.array([emb[t] for t, _, _ in chosen], np.float32)[ok], np.array([emb[s] for _, s, _ in chosen], np.float32)[ok],
                    np.array([k for _, _, k in chosen])[ok], quality[ok], np.zeros((0, dim), np.float32), np.zeros(0, np.float32))


def world_rows(table, embed, found: list[tuple[str, str, int]], scenes: int | None = None, seed: int = 0,
               exclude_templates: frozenset[str] = frozenset()):
    """The world's rows beside the measured triples, both labelled by ``table``: ``cell_rows`` (drawn
    sources) and ``probe_rows`` (the cache's own candidates, ``found`` by ``probe_pairs``)."""
    from orchestrator.sim.ground_truth import CELL_SCENES, cell_rows

    return (cell_rows(table, embed, scenes or CELL_SCENES, seed, exclude_templates=exclude_templates)
            + probe_rows(table, embed, found, seed=seed, exclude_templates=exclude_templates))


def world_profile(table) -> Profile:
    """The paper-scale profile the probe streams run on, scored by ``table``."""
    from orchestrator.paths import paper_scale_profile

    return dataclasses.replace(Profile.load(paper_scale_profile()), ground_truth=table)


def fit_world_pair_predictor(pairs, seed: int = 0, scenes: int | None = None):
    """The pair predictor the embedded world serves with: the measured triples, ``cell_rows`` of the
    table grouped from them, and the probe's own candidates along world streams labelled by it."""
    from orchestrator.policy.pair_predictor import PairQualityPredictor
    from orchestrator.sim.ground_truth import table_from_pairs

    table = table_from_pairs(pairs)
    extra = world_rows(table, embed_prompts, probe_pairs(world_profile(table)), scenes, seed)
    return PairQualityPredictor.fit(pairs, seed=seed, extra=extra, **WORLD_FIT)


PREDICTOR_VERSION = "probe-v2"
"""Part of the fitted pair predictor's cache key: bump it when the features, the rows or the network change."""


def _fit_name(digest: str) -> str:
    from orchestrator.sim.ground_truth import CELL_SCENES

    return f"{digest[:16]}-{PREDICTOR_VERSION}-{CELL_SCENES}.npz"


def _digest(pair_table: Path) -> str:
    """What a fit is keyed by: the pairs file's content."""
    return hashlib.sha1(Path(pair_table).read_bytes()).hexdigest()


def shipped_fit_dir(pair_table: Path) -> Path:
    """Where ``argus build-pairs`` ships the fit of the pairs file it wrote, beside it (83 kB), so a
    fresh clone, the tests and the demo load it instead of fitting."""
    return Path(pair_table).parent / "pair_predictor"


@functools.lru_cache(maxsize=4)
def _fitted(path: str, digest: str):
    from orchestrator.paths import RUNS_DIR
    from orchestrator.policy.pair_predictor import PairQualityPredictor
    from orchestrator.profile.pairs import PairTable
    from orchestrator.sim.ground_truth import is_world_pairs

    cached = RUNS_DIR / "pair_predictor" / _fit_name(digest)
    for fit in (shipped_fit_dir(Path(path)) / _fit_name(digest), cached):
        if fit.exists():
            return PairQualityPredictor.load(fit)
    pairs = PairTable.load(Path(path))
    if is_world_pairs(pairs):  # the embedded world's triples: with its cell-labelled rows
        model = fit_world_pair_predictor(pairs)
    else:
        model = PairQualityPredictor.fit(pairs)
    cached.parent.mkdir(parents=True, exist_ok=True)
    model.save(cached)
    return model


def ship_pair_predictor(pair_table: Path) -> Path:
    """Fit (or load) the predictor of ``pair_table`` and write it to ``shipped_fit_dir``, replacing
    the fits of earlier pairs files."""
    digest = _digest(pair_table)
    model = _fitted(str(Path(pair_table).resolve()), digest)
    out = shipped_fit_dir(pair_table)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.npz"):
        old.unlink()
    model.save(out / _fit_name(digest))
    return out / _fit_name(digest)


def build_pairs(pairs_path: Path, profiles: list, docs_path: Path, scenes_per_kind: int, seeds: int, generate: bool = True,
                retest: Path | None = None, log=print):
    """``argus build-pairs``: the triples, the ground-truth table in every profile
    (``ground_truth.write_ground_truth``), and the fitted pair predictor shipped beside the triples.
    ``retest``: only the same triples measured again with the next ``seeds`` seeds, into that file
    (``bench.predictor.label_ceiling`` reads it); nothing else is written."""
    from orchestrator.sim.ground_truth import write_ground_truth

    if retest is not None:
        from tiny_model.pair_data import PairDataConfig, write_pairs

        return write_pairs(PairDataConfig(scenes_per_kind=scenes_per_kind, seeds=seeds, first_seed=seeds), retest, log=log)

    table = write_ground_truth(pairs_path, profiles, docs_path, scenes_per_kind, seeds, generate=generate, log=log)
    log(f"wrote the fitted pair predictor to {ship_pair_predictor(pairs_path)}")
    return table


def fit_pair_predictor(pair_table: Path):
    """The pair predictor fitted on a file of ground-truth triples (``argus build-pairs``): fitted once
    per file content (a minute or two on two cores, most of it embedding the world's cell-labelled
    captions) and kept under runs/pair_predictor/, so the benches and the front door load it after;
    the fit ``argus build-pairs`` ships beside the file (``ship_pair_predictor``) is loaded first."""
    return _fitted(str(Path(pair_table).resolve()), _digest(pair_table))
