"""The approximate cache's store: intermediate latents keyed by prompt embedding (NIRVANA-style).

An *entry* is one generation: its unit-norm pooled prompt embedding plus the latents it passed
at each step-skip level K (the input of denoising step K). An *item* is one (entry, K) latent;
budgets, hits and eviction work on items, since a K=25 latent saves 25 steps and a K=5 one 5.

Search is exact inner product (FAISS ``IndexFlatIP`` behind ``IndexIDMap2``) over normalised
embeddings, one index per (tenant, K), so a lookup only ever sees items of its own tenant that
hold a latent for that K. Tenants are partitions: shared approximate caches leak prompts across
users (covert channels, prompt recovery, poisoning), so a request that names a tenant only sees
that tenant's entries; requests without one share the "" partition.

Durability: every insert and eviction is an SQLite transaction (WAL), so a crash mid-write
never leaves a half-written item. On open the store checks the schema version and shapes; a
corrupt or mismatched file is moved aside, reported, and the cache starts empty.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger("argus.cache")
SCHEMA_VERSION = 1
ENTRY_CANDIDATES = 32
"""Entries examined by the single search of a lookup before falling back to per-level indexes."""
CANDIDATES_PER_LEVEL = 4
"""Sources per K a lookup offers the front door (``LatentCache.candidates``)."""
NIRVANA_THRESHOLDS = {25: 0.95, 20: 0.90, 15: 0.85, 10: 0.75, 5: 0.65}
"""NIRVANA's reported similarity thresholds per K (see docs/cache.md for ours)."""


class CacheInputError(ValueError):
    """Bad input to the cache (wrong dim, NaN, unknown K); the caller gets INVALID_ARGUMENT."""


@dataclasses.dataclass
class CacheConfig:
    levels: tuple[int, ...] = (5, 10, 15, 20, 25)
    """Step-skip levels K > 0 that the cache keeps latents for."""
    embedding_dim: int = 64
    latent_shape: tuple[int, ...] = (4, 8, 8)
    byte_budget: int = 256 * 2**20
    """Upper bound on stored bytes (latents + embeddings); never exceeded after an insert returns."""
    policy: Literal["lcbfu", "lru"] = "lcbfu"
    evict_to_fraction: float = 0.95
    """When over budget, evict down to this fraction of it (amortises FAISS removals)."""
    thresholds: dict[int, float] = dataclasses.field(default_factory=lambda: dict(NIRVANA_THRESHOLDS))
    """Minimum similarity for a latent at K to be used."""
    persist_dir: Path | None = None

    def __post_init__(self):
        if any(k <= 0 for k in self.levels):
            raise ValueError(f"cached levels must be > 0, got {self.levels}")
        missing = [k for k in self.levels if k not in self.thresholds]
        if missing:
            raise ValueError(f"no similarity threshold for levels {missing}")
        if self.policy not in ("lcbfu", "lru"):
            raise ValueError(f"unknown eviction policy {self.policy!r}; use 'lcbfu' or 'lru'")


@dataclasses.dataclass
class Item:
    entry_id: int
    level: int
    tenant: str
    latent: np.ndarray
    hits: int
    last_access: float


@dataclasses.dataclass
class Match:
    level: int
    entry_id: int  # -1: nothing cached at this level
    similarity: float  # -1.0 when nothing cached

    @property
    def found(self) -> bool:
        return self.entry_id >= 0


def _normalise(embedding: np.ndarray, dim: int) -> np.ndarray:
    e = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if e.shape[0] != dim:
        raise CacheInputError(f"embedding has {e.shape[0]} values; expected {dim}")
    if not np.isfinite(e).all():
        raise CacheInputError("embedding contains NaN or Inf")
    norm = float(np.linalg.norm(e))
    if norm == 0.0:
        raise CacheInputError("embedding is all zeros")
    return (e / norm).reshape(1, -1)


class LatentCache:
    def __init__(self, config: CacheConfig, clock=time.time):
        import faiss

        self._faiss = faiss
        self.cfg = config
        self.clock = clock
        self.items: dict[tuple[int, int], Item] = {}
        self.embeddings: dict[int, np.ndarray] = {}
        self.entry_tenant: dict[int, str] = {}
        self.indexes: dict[tuple[str, int], object] = {}
        self.entry_indexes: dict[str, object] = {}  # tenant -> index over entries (any level)
        self.entry_levels: dict[int, set[int]] = {}
        self.next_id = 0
        self.bytes = 0
        self.evictions = 0
        self.lookups = {k: 0 for k in config.levels}
        self.hits = {k: 0 for k in config.levels}
        self.db: sqlite3.Connection | None = None
        self.load_error: str | None = None
        self.latent_bytes = int(np.prod(config.latent_shape)) * 4
        self.item_bytes = self.latent_bytes + config.embedding_dim * 4
        if config.persist_dir is not None:
            self._open_db(Path(config.persist_dir))

    # -------------------------------------------------------------------------------- persistence
    def _open_db(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "cache.sqlite"
        try:
            self.db = self._connect(path)
            self._check_meta()
            self._load_rows()
        except (sqlite3.DatabaseError, CacheInputError, ValueError) as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("cache file %s is unusable (%s); moving it aside and starting empty", path, self.load_error)
            if self.db is not None:
                self.db.close()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(path) + suffix)
                if p.exists():
                    p.rename(Path(f"{path}{suffix}.bad-{stamp}"))
            self._reset_memory()
            self.db = self._connect(path)
            self._check_meta()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _meta_expected(self) -> dict[str, str]:
        c = self.cfg
        return {"schema_version": str(SCHEMA_VERSION), "embedding_dim": str(c.embedding_dim), "latent_shape": ",".join(map(str, c.latent_shape)), "dtype": "float32"}

    def _check_meta(self) -> None:
        db = self.db
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS items (entry_id INTEGER NOT NULL, level INTEGER NOT NULL, tenant TEXT NOT NULL,"
            " embedding BLOB NOT NULL, latent BLOB NOT NULL, hits INTEGER NOT NULL, last_access REAL NOT NULL,"
            " PRIMARY KEY (entry_id, level))"
        )
        found = dict(db.execute("SELECT key, value FROM meta").fetchall())
        expected = self._meta_expected()
        if not found:
            db.executemany("INSERT INTO meta VALUES (?, ?)", expected.items())
        elif found != expected:
            raise ValueError(f"cache file was written with {found}, this cache expects {expected}")

    def _load_rows(self) -> None:
        shape = tuple(self.cfg.latent_shape)
        for entry_id, level, tenant, emb, latent, hits, last in self.db.execute("SELECT * FROM items ORDER BY entry_id, level"):
            e = np.frombuffer(emb, dtype=np.float32)
            lat = np.frombuffer(latent, dtype=np.float32)
            if e.size != self.cfg.embedding_dim or lat.size != int(np.prod(shape)):
                raise ValueError(f"item ({entry_id}, {level}) has the wrong size")
            if level not in self.cfg.levels:
                continue  # a level no longer configured: ignored (and dropped at the next eviction)
            self._add_memory(entry_id, level, tenant, e.reshape(1, -1), lat.reshape(shape).copy(), hits, last)
            self.next_id = max(self.next_id, entry_id + 1)

    def _reset_memory(self) -> None:
        self.items.clear()
        self.embeddings.clear()
        self.entry_tenant.clear()
        self.entry_levels.clear()
        self.indexes.clear()
        self.entry_indexes.clear()
        self.bytes = 0
        self.next_id = 0

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    # -------------------------------------------------------------------------------- core
    def _index(self, tenant: str, level: int):
        key = (tenant, level)
        if key not in self.indexes:
            self.indexes[key] = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self.cfg.embedding_dim))
        return self.indexes[key]

    def _add_memory(self, entry_id, level, tenant, emb, latent, hits, last) -> None:
        self.items[(entry_id, level)] = Item(entry_id, level, tenant, latent, hits, last)
        if entry_id not in self.embeddings:
            if tenant not in self.entry_indexes:
                self.entry_indexes[tenant] = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self.cfg.embedding_dim))
            self.entry_indexes[tenant].add_with_ids(emb, np.array([entry_id], dtype=np.int64))
        self.embeddings[entry_id] = emb
        self.entry_tenant[entry_id] = tenant
        self.entry_levels.setdefault(entry_id, set()).add(level)
        self._index(tenant, level).add_with_ids(emb, np.array([entry_id], dtype=np.int64))
        self.bytes += self.item_bytes

    def insert(self, embedding: np.ndarray, latents: dict[int, np.ndarray], tenant: str = "") -> int:
        """Store one generation's latents (only configured levels); returns the new entry id."""
        emb = _normalise(embedding, self.cfg.embedding_dim)
        clean: dict[int, np.ndarray] = {}
        for level, latent in latents.items():
            if level not in self.cfg.levels:
                continue
            lat = np.asarray(latent, dtype=np.float32)
            if lat.shape != tuple(self.cfg.latent_shape):
                raise CacheInputError(f"latent for K={level} has shape {list(lat.shape)}; expected {list(self.cfg.latent_shape)}")
            if not np.isfinite(lat).all():
                raise CacheInputError(f"latent for K={level} contains NaN or Inf")
            clean[level] = np.ascontiguousarray(lat)
        entry_id = self.next_id
        self.next_id += 1
        if not clean:
            return entry_id
        now = self.clock()
        if self.db is not None:
            with self._tx():
                self.db.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?, 0, ?)",
                    [(entry_id, level, tenant, emb.tobytes(), lat.tobytes(), now) for level, lat in clean.items()],
                )
        for level, lat in clean.items():
            self._add_memory(entry_id, level, tenant, emb, lat, 0, now)
        self._enforce_budget()
        return entry_id

    def _tx(self):
        db = self.db

        class _Tx:
            def __enter__(self_):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_, exc_type, *rest):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    def lookup(self, embedding: np.ndarray, tenant: str = "", candidates: dict[int, list[Match]] | None = None) -> list[Match]:
        """The most similar cached item at every configured level (same tenant only); the first of
        ``candidates`` where the caller has already searched them."""
        cands = candidates if candidates is not None else self.candidates(embedding, tenant, per_level=1)
        return [cands[level][0] if cands[level] else Match(level, -1, -1.0) for level in sorted(self.cfg.levels)]

    def candidates(self, embedding: np.ndarray, tenant: str = "", per_level: int = CANDIDATES_PER_LEVEL) -> dict[int, list[Match]]:
        """Up to ``per_level`` cached items per configured level, most similar first (same tenant only):
        the front door may rank them by predicted quality, since the most similar source is not
        always the best one to resume from.

        One search over the tenant's entries (top ENTRY_CANDIDATES) answers every level whose items
        are among them; a level with none there (thinned by eviction) falls back to its own index."""
        emb = _normalise(embedding, self.cfg.embedding_dim)
        found: dict[int, list[Match]] = {level: [] for level in self.cfg.levels}
        entries = self.entry_indexes.get(tenant)
        if entries is not None and entries.ntotal:
            sims, ids = entries.search(emb, min(ENTRY_CANDIDATES, entries.ntotal))
            for sim, entry_id in zip(sims[0], ids[0]):
                for level in self.entry_levels.get(int(entry_id), ()):
                    if len(found[level]) < per_level:
                        found[level].append(Match(level, int(entry_id), float(sim)))
                if all(len(f) == per_level for f in found.values()):
                    break
        for level, matches in found.items():
            index = self.indexes.get((tenant, level))
            if matches or index is None or index.ntotal == 0:
                continue
            sims, ids = index.search(emb, min(per_level, index.ntotal))
            matches.extend(Match(level, int(i), float(s)) for s, i in zip(sims[0], ids[0]) if i >= 0)
        return found

    def entry_embedding(self, entry_id: int) -> np.ndarray | None:
        """(embedding_dim,) unit-norm prompt embedding an entry was stored under (None once evicted)."""
        e = self.embeddings.get(entry_id)
        return None if e is None else e.reshape(-1)

    def choose(self, matches: list[Match], level: int | None = None) -> Match | None:
        """The match to use: at ``level`` if given and above its threshold, else the largest K that is."""
        if level is not None and level not in self.cfg.levels:
            raise CacheInputError(f"K={level} is not a cached level (levels: {', '.join(map(str, sorted(self.cfg.levels)))})")
        candidates = [m for m in matches if m.found and m.similarity >= self.cfg.thresholds[m.level] and (level is None or m.level == level)]
        return max(candidates, key=lambda m: m.level) if candidates else None

    def fetch(self, match: Match, tenant: str = "") -> np.ndarray:
        """The latent of a match; counts the hit (frequency and recency feed eviction)."""
        item = self.items.get((match.entry_id, match.level))
        if item is None or item.tenant != tenant:
            raise KeyError(f"no item ({match.entry_id}, K={match.level}) for this tenant")
        item.hits += 1
        item.last_access = self.clock()
        if self.db is not None:
            self.db.execute("UPDATE items SET hits = ?, last_access = ? WHERE entry_id = ? AND level = ?", (item.hits, item.last_access, item.entry_id, item.level))
        return item.latent

    def fetch_entry(self, entry_id: int, level: int, tenant: str = "") -> np.ndarray | None:
        """The latent of one entry at ``level`` (None once evicted), with hit-rate accounting."""
        if level not in self.cfg.levels:
            raise CacheInputError(f"K={level} is not a cached level (levels: {', '.join(map(str, sorted(self.cfg.levels)))})")
        self.lookups[level] += 1
        try:
            latent = self.fetch(Match(level, entry_id, 1.0), tenant)
        except KeyError:
            return None
        self.hits[level] += 1
        return latent

    def retrieve(self, embedding: np.ndarray, level: int | None = None, tenant: str = "",
                 candidates: dict[int, list[Match]] | None = None) -> tuple[list[Match], Match | None, np.ndarray | None]:
        """lookup + choose + fetch, with hit-rate accounting per K (what the Triton model calls)."""
        matches = self.lookup(embedding, tenant, candidates)
        chosen = self.choose(matches, level)
        for k in ([level] if level is not None else []):
            self.lookups[k] += 1
            self.hits[k] += int(chosen is not None)
        if level is None and chosen is not None:
            self.lookups[chosen.level] += 1
            self.hits[chosen.level] += 1
        return matches, chosen, (self.fetch(chosen, tenant) if chosen is not None else None)

    # -------------------------------------------------------------------------------- eviction
    def eviction_order(self) -> list[tuple[int, int]]:
        """Items from first to last evicted. LCBFU: lowest (K x (1 + hits)) first, older first on ties."""
        keys = list(self.items)
        if not keys:
            return []
        last = np.array([self.items[k].last_access for k in keys])
        if self.cfg.policy == "lru":
            order = np.argsort(last, kind="stable")
        else:
            benefit = np.array([k[1] * (1 + self.items[k].hits) for k in keys], dtype=np.float64)
            order = np.lexsort((last, benefit))
        return [keys[i] for i in order]

    def _enforce_budget(self) -> None:
        if self.bytes <= self.cfg.byte_budget:
            return
        target = int(self.cfg.byte_budget * self.cfg.evict_to_fraction)
        victims = []
        freed = 0
        for key in self.eviction_order():
            if self.bytes - freed <= target:
                break
            victims.append(key)
            freed += self.item_bytes
        self.evict(victims)

    def evict(self, keys: list[tuple[int, int]]) -> None:
        if not keys:
            return
        if self.db is not None:
            with self._tx():
                self.db.executemany("DELETE FROM items WHERE entry_id = ? AND level = ?", keys)
        by_index: dict[tuple[str, int], list[int]] = {}
        for entry_id, level in keys:
            item = self.items.pop((entry_id, level))
            by_index.setdefault((item.tenant, level), []).append(entry_id)
            self.entry_levels[entry_id].discard(level)
            self.bytes -= self.item_bytes
        for (tenant, level), ids in by_index.items():
            self.indexes[(tenant, level)].remove_ids(np.array(ids, dtype=np.int64))
        gone: dict[str, list[int]] = {}
        for entry_id in {e for e, _ in keys}:
            if not self.entry_levels[entry_id]:
                gone.setdefault(self.entry_tenant[entry_id], []).append(entry_id)
                del self.embeddings[entry_id], self.entry_tenant[entry_id], self.entry_levels[entry_id]
        for tenant, ids in gone.items():
            self.entry_indexes[tenant].remove_ids(np.array(ids, dtype=np.int64))
        self.evictions += len(keys)

    # -------------------------------------------------------------------------------- stats
    def stats(self) -> dict:
        per_level = {k: sum(1 for (_, lv) in self.items if lv == k) for k in self.cfg.levels}
        return {
            "entries": len(self.embeddings),
            "items": len(self.items),
            "items_by_level": per_level,
            "bytes": self.bytes,
            "byte_budget": self.cfg.byte_budget,
            "evictions": self.evictions,
            "hit_rate_by_level": {k: (self.hits[k] / self.lookups[k] if self.lookups[k] else None) for k in self.cfg.levels},
            "tenants": sorted({t for t, _ in self.indexes}),
            "load_error": self.load_error,
        }
