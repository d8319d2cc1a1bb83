"""Unit tests of the cache store (no Triton): retrieval, thresholds, eviction, tenants, durability."""

from __future__ import annotations

import numpy as np
import pytest

from triton_backend.cache_store import CacheConfig, CacheInputError, LatentCache

LEVELS = (5, 10, 15, 20, 25)


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def vec(seed, dim=64):
    return unit(np.random.RandomState(seed).randn(dim))


def with_similarity(base, sim, seed=99):
    """A unit vector whose cosine with ``base`` is exactly ``sim``."""
    r = np.random.RandomState(seed).randn(base.size).astype(np.float32)
    r -= r.dot(base) * base
    return unit(sim * base + np.sqrt(1 - sim**2) * unit(r))


def latents(seed):
    rng = np.random.RandomState(seed)
    return {k: rng.randn(4, 8, 8).astype(np.float32) for k in LEVELS}


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        self.t += 1.0
        return self.t


def test_insert_then_retrieve_is_bit_exact():
    cache = LatentCache(CacheConfig())
    lat = latents(0)
    cache.insert(vec(1), lat)
    for k in LEVELS:
        _, chosen, got = cache.retrieve(vec(1), k)
        assert chosen.similarity == pytest.approx(1.0, abs=1e-5)
        assert got.tobytes() == lat[k].tobytes()


@pytest.mark.parametrize("sim,expected_k", [(0.99, 25), (0.92, 20), (0.87, 15), (0.80, 10), (0.70, 5), (0.3, None)])
def test_similarity_picks_the_largest_safe_k(sim, expected_k):
    cache = LatentCache(CacheConfig())
    base = vec(2)
    cache.insert(base, latents(0))
    _, chosen, latent = cache.retrieve(with_similarity(base, sim))
    assert (chosen.level if chosen else None) == expected_k
    assert (latent is None) == (expected_k is None)


def test_requested_k_below_threshold_misses_and_counts():
    cache = LatentCache(CacheConfig())
    base = vec(3)
    cache.insert(base, latents(0))
    _, chosen, _ = cache.retrieve(with_similarity(base, 0.8), 25)
    assert chosen is None
    _, chosen, _ = cache.retrieve(with_similarity(base, 0.8), 10)
    assert chosen.level == 10
    rates = cache.stats()["hit_rate_by_level"]
    assert rates[25] == 0.0 and rates[10] == 1.0


def test_byte_budget_is_never_exceeded_and_lcbfu_evicts_low_benefit_first():
    item = 4 * 8 * 8 * 4 + 64 * 4
    cache = LatentCache(CacheConfig(byte_budget=40 * item, evict_to_fraction=1.0), clock=FakeClock())
    first = cache.insert(vec(10), latents(10))
    for _ in range(5):  # the first entry's K=5 latent is popular: benefit 5 x 6 > 25
        cache.fetch(cache.lookup(vec(10))[0])
    for i in range(11, 40):
        cache.insert(vec(i), latents(i))
        assert cache.bytes <= cache.cfg.byte_budget
    levels_left = sorted({lv for _, lv in cache.items})
    assert cache.evictions > 0
    # Unused K=5 items went first; K=25 items (most steps saved) all survive.
    assert 25 in levels_left and sum(1 for _, lv in cache.items if lv == 25) == 30
    assert (first, 5) in cache.items  # hits raised its benefit above unused K=5/10 items


def test_lru_evicts_least_recently_used():
    item = 4 * 8 * 8 * 4 + 64 * 4
    cache = LatentCache(CacheConfig(levels=(25,), byte_budget=3 * item, evict_to_fraction=1.0, policy="lru"), clock=FakeClock())
    ids = [cache.insert(vec(i), latents(i)) for i in range(3)]
    cache.fetch(cache.lookup(vec(0))[0])  # touch the oldest
    cache.insert(vec(3), latents(3))
    assert (ids[1], 25) not in cache.items and (ids[0], 25) in cache.items


def test_tenants_never_see_each_other():
    cache = LatentCache(CacheConfig())
    cache.insert(vec(5), latents(5), tenant="alice")
    _, chosen, _ = cache.retrieve(vec(5), tenant="bob")
    assert chosen is None
    _, chosen, _ = cache.retrieve(vec(5))
    assert chosen is None
    _, chosen, _ = cache.retrieve(vec(5), tenant="alice")
    assert chosen is not None
    with pytest.raises(KeyError):
        cache.fetch(chosen, tenant="bob")


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda c: c.lookup(np.ones(32, np.float32)), "expected 64"),
        (lambda c: c.lookup(np.full(64, np.nan, np.float32)), "NaN"),
        (lambda c: c.lookup(np.zeros(64, np.float32)), "zeros"),
        (lambda c: c.retrieve(vec(1), 7), "not a cached level"),
        (lambda c: c.insert(vec(1), {5: np.full((4, 8, 8), np.inf, np.float32)}), "NaN or Inf"),
        (lambda c: c.insert(vec(1), {5: np.zeros((4, 4, 4), np.float32)}), "shape"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(CacheInputError, match=message):
        call(LatentCache(CacheConfig()))


def test_persists_and_reloads(tmp_path):
    cache = LatentCache(CacheConfig(persist_dir=tmp_path))
    lat = latents(7)
    eid = cache.insert(vec(7), lat, tenant="t")
    cache.fetch(cache.lookup(vec(7), "t")[4], "t")
    cache.close()
    again = LatentCache(CacheConfig(persist_dir=tmp_path))
    assert again.load_error is None and again.stats()["items"] == len(LEVELS)
    _, chosen, got = again.retrieve(vec(7), 25, tenant="t")
    assert chosen.entry_id == eid and got.tobytes() == lat[25].tobytes()
    assert again.items[(eid, 25)].hits == 2
    assert again.insert(vec(8), latents(8)) == eid + 1  # ids continue, never reused


def test_corrupt_file_is_reported_and_cache_starts_empty(tmp_path):
    cache = LatentCache(CacheConfig(persist_dir=tmp_path))
    cache.insert(vec(1), latents(1))
    cache.close()
    (tmp_path / "cache.sqlite").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"cache.sqlite{suffix}").unlink(missing_ok=True)
    again = LatentCache(CacheConfig(persist_dir=tmp_path))
    assert again.load_error is not None and again.stats()["items"] == 0
    assert list(tmp_path.glob("cache.sqlite.bad-*"))
    again.insert(vec(2), latents(2))  # and it works afterwards
    assert again.stats()["items"] == len(LEVELS)


def test_version_mismatch_starts_empty(tmp_path):
    LatentCache(CacheConfig(persist_dir=tmp_path)).insert(vec(1), latents(1))
    other = LatentCache(CacheConfig(persist_dir=tmp_path, embedding_dim=32))
    assert "expects" in other.load_error and other.stats()["items"] == 0


def test_lookup_matches_exhaustive_per_level_search_after_evictions():
    """The single-search lookup returns what a search of each level's own items would."""
    item = 4 * 8 * 8 * 4 + 64 * 4
    cache = LatentCache(CacheConfig(byte_budget=300 * item, evict_to_fraction=1.0), clock=FakeClock())
    for i in range(100):
        cache.insert(vec(i), latents(i))  # 500 items: evictions thin the low levels
        if i % 7 == 0:
            cache.fetch(cache.lookup(vec(i))[0])  # some K=5 items become popular and survive
    assert cache.evictions > 0 and len({lv for _, lv in cache.items}) > 2
    for q in range(200, 230):
        query = vec(q)
        for m in cache.lookup(query):
            ids = [e for (e, lv) in cache.items if lv == m.level]
            if not ids:
                assert not m.found
                continue
            sims = [float((cache.embeddings[e] @ query)[0]) for e in ids]
            assert m.entry_id == ids[int(np.argmax(sims))]
            assert m.similarity == pytest.approx(max(sims), abs=1e-5)


def test_candidates_offer_the_most_similar_sources_per_level_first_of_them_the_lookup():
    """Several sources per K, most similar first (the front door ranks them by predicted quality);
    a level only some entries reached offers only those; their embeddings come back with them."""
    cache = LatentCache(CacheConfig())
    query = vec(0)
    sims = [0.99, 0.9, 0.8, 0.7, 0.6, 0.5]
    ids = [cache.insert(with_similarity(query, s, seed=i), latents(i) if i != 1 else {5: latents(i)[5]}) for i, s in enumerate(sims)]
    cands = cache.candidates(query, per_level=4)
    assert [m.entry_id for m in cands[5]] == ids[:4]
    assert [m.entry_id for m in cands[25]] == [ids[0], *ids[2:5]]  # entry 1 holds K=5 only
    assert all(a.similarity >= b.similarity for a, b in zip(cands[25], cands[25][1:]))
    assert [m.similarity for m in cands[5]] == pytest.approx(sims[:4], abs=2e-3)
    assert [c[0] for c in cands.values()] == cache.lookup(query)
    assert cache.entry_embedding(ids[2]) @ query == pytest.approx(cands[5][2].similarity, abs=1e-5)
    assert cache.candidates(query, tenant="other") == {k: [] for k in LEVELS}


def test_a_stopping_worker_sends_its_queued_inserts_first():
    """CacheLink.flush (the denoiser's finalize): queued inserts are all sent before it returns; a
    cache that does not answer bounds the wait instead of holding the shutdown."""
    import threading
    import time

    from triton_backend.cache_link import CacheLink

    sent, gate = [], threading.Event()
    link = CacheLink()

    def slow_call(inputs, outputs, budget_s=None):
        gate.wait(5)
        time.sleep(0.02)
        sent.append(inputs["TENANT"][0, 0])
        return {"ENTRY_IDS": np.zeros((1, 5), np.int64)}

    link._call = slow_call
    for t in ("a", "b", "c"):
        link.insert_later(np.ones((1, 64), np.float32), np.zeros((1, 6, 4, 8, 8), np.float32), [t])
    assert not link.flush(timeout_s=0.1) and sent == []  # the cache hangs: the wait is bounded
    gate.set()
    assert link.flush(timeout_s=5.0) and sent == [b"a", b"b", b"c"]
    assert CacheLink().flush(timeout_s=0.0)  # nothing ever queued
