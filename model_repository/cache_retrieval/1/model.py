"""cache_retrieval: FAISS search over prompt embeddings for cached intermediate latents, and inserts.

One instance only (config), so there is exactly one writer and instances never diverge.
A request is a *lookup* (TEXT_EMBEDS, optional STEP_SKIP_K, optional TENANT), a *fetch* of one
entry's latent (ENTRY_ID and STEP_SKIP_K: what a generation asks for the entry chosen for it; K=0
in the answer means evicted), or an *insert*
(the same plus LEVEL_LATENTS, the denoiser's latents at every step-skip level; NaN rows, the
levels a generation never passed, are skipped). Outputs per cached level K: the best entry id
and its similarity, and for a lookup without K up to CANDIDATES sources (ids, similarities, the
embeddings they were stored under) for the front door to rank; plus the latent for the requested K (or, with no K, the largest K whose
similarity clears its threshold) and that K (0 on a miss). Hit rates, entries, bytes and
evictions are Triton custom metrics on the server's /metrics endpoint.
"""

import json
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from triton_backend.cache_store import CacheConfig, CacheInputError, LatentCache
from triton_backend.batching import BadRequest, decode_tenants, error_response, input_array


def _ints(text):
    return tuple(int(x) for x in text.split(",") if x.strip())


class TritonPythonModel:
    def initialize(self, args):
        p = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        persist = p.get("PERSIST_DIR") or os.environ.get("ARGUS_CACHE_DIR") or None
        thresholds = {int(k): float(v) for k, v in (kv.split(":") for kv in p["THRESHOLDS"].split(","))}
        self.all_levels = list(_ints(p["ALL_LEVELS"]))
        self.cache = LatentCache(
            CacheConfig(
                levels=_ints(p["LEVELS"]),
                embedding_dim=int(p["EMBEDDING_DIM"]),
                latent_shape=_ints(p["LATENT_SHAPE"]),
                byte_budget=int(p["BYTE_BUDGET"]),
                policy=p.get("POLICY", "lcbfu"),
                thresholds=thresholds,
                persist_dir=Path(persist) if persist else None,
            )
        )
        self.levels = sorted(self.cache.cfg.levels)
        self.num_candidates = int(p.get("CANDIDATES", "1"))
        if self.cache.load_error:
            pb_utils.Logger.log_error(f"cache_retrieval: persisted cache unusable, started empty: {self.cache.load_error}")
        self._init_metrics()

    def _init_metrics(self):
        # Families must outlive their metrics, so all of them are kept on self.
        fam = pb_utils.MetricFamily
        self.families = {
            "lookups": fam("argus_cache_lookups_total", "Cache lookups by requested (or chosen) K", fam.COUNTER),
            "hits": fam("argus_cache_hits_total", "Cache hits by K", fam.COUNTER),
            "entries": fam("argus_cache_entries", "Cached generations (entries)", fam.GAUGE),
            "items": fam("argus_cache_items", "Cached latents (entry x K items)", fam.GAUGE),
            "bytes": fam("argus_cache_bytes", "Bytes held by the cache", fam.GAUGE),
            "evictions": fam("argus_cache_evictions_total", "Evicted items", fam.COUNTER),
        }
        self.m_entries, self.m_items, self.m_bytes, self.m_evictions = (
            self.families[n].Metric(labels={}) for n in ("entries", "items", "bytes", "evictions")
        )
        self.m_lookups, self.m_hits = self.families["lookups"], self.families["hits"]
        self.m_by_k = {k: (self.m_lookups.Metric(labels={"k": str(k)}), self.m_hits.Metric(labels={"k": str(k)})) for k in self.levels}
        self._seen = {k: (0, 0) for k in self.levels}
        self._evicted = 0
        self._update_metrics()

    def _update_metrics(self):
        c = self.cache
        for k, (lookups, hits) in self.m_by_k.items():
            seen_l, seen_h = self._seen[k]
            lookups.increment(c.lookups[k] - seen_l)
            hits.increment(c.hits[k] - seen_h)
            self._seen[k] = (c.lookups[k], c.hits[k])
        self.m_evictions.increment(c.evictions - self._evicted)
        self._evicted = c.evictions
        self.m_entries.set(len(c.embeddings))
        self.m_items.set(len(c.items))
        self.m_bytes.set(c.bytes)

    def _one(self, request):
        emb = input_array(request, "TEXT_EMBEDS")
        n = emb.shape[0]
        tenants = decode_tenants(request, "TENANT", n, empty_is_default=True)
        tenants = [""] * n if tenants is None else tenants
        ks = input_array(request, "STEP_SKIP_K", required=False)
        inserts = input_array(request, "LEVEL_LATENTS", required=False)
        by_id = input_array(request, "ENTRY_ID", required=False)
        if by_id is not None and ks is None:
            raise BadRequest("ENTRY_ID needs STEP_SKIP_K: the level of the entry's latent to fetch")
        ids = np.full((n, len(self.levels)), -1, np.int64)
        sims = np.full((n, len(self.levels)), -1.0, np.float32)
        latents = np.zeros((n, *self.cache.cfg.latent_shape), np.float32)
        chosen_k = np.zeros((n, 1), np.int32)
        cand_ids = np.full((n, len(self.levels), self.num_candidates), -1, np.int64)
        cand_sims = np.full((n, len(self.levels), self.num_candidates), -1.0, np.float32)
        cand_embs = np.zeros((n, len(self.levels), self.num_candidates, self.cache.cfg.embedding_dim), np.float32)
        for i in range(n):
            if inserts is not None:
                if inserts.shape[1] != len(self.all_levels):
                    raise BadRequest(f"LEVEL_LATENTS has {inserts.shape[1]} levels; expected {len(self.all_levels)} ({self.all_levels})")
                rows = {lv: inserts[i, j] for j, lv in enumerate(self.all_levels) if lv in self.levels and not np.isnan(inserts[i, j]).all()}
                entry = self.cache.insert(emb[i], rows, tenants[i])
                ids[i, [self.levels.index(lv) for lv in rows]] = entry
                sims[i, [self.levels.index(lv) for lv in rows]] = 1.0
                continue
            level = int(ks.reshape(-1)[i]) if ks is not None else None
            if by_id is not None:  # the generation's own fetch of the entry the front door chose
                entry = int(by_id.reshape(-1)[i])
                latent = self.cache.fetch_entry(entry, level, tenants[i])
                if latent is not None:
                    latents[i], chosen_k[i, 0] = latent, level
                continue
            # A probe's lookup (no K): every source per K the front door may rank, from the one search
            cands = self.cache.candidates(emb[i], tenants[i], self.num_candidates) if level is None else None
            matches, chosen, latent = self.cache.retrieve(emb[i], level, tenants[i], cands)
            ids[i] = [m.entry_id for m in matches]
            sims[i] = [m.similarity for m in matches]
            if cands is not None:
                for j, lv in enumerate(self.levels):
                    for c, m in enumerate(cands[lv]):
                        cand_ids[i, j, c], cand_sims[i, j, c], cand_embs[i, j, c] = m.entry_id, m.similarity, self.cache.entry_embedding(m.entry_id)
            if chosen is not None:
                latents[i] = latent
                chosen_k[i, 0] = chosen.level
        tensors = [
            pb_utils.Tensor("ENTRY_IDS", ids),
            pb_utils.Tensor("SIMILARITY", sims),
            pb_utils.Tensor("LATENT", latents),
            pb_utils.Tensor("K", chosen_k),
            pb_utils.Tensor("CANDIDATE_IDS", cand_ids),
            pb_utils.Tensor("CANDIDATE_SIMILARITY", cand_sims),
            pb_utils.Tensor("CANDIDATE_EMBEDS", cand_embs),
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except (BadRequest, CacheInputError) as e:
                responses.append(error_response(str(e)))
            except Exception as e:  # noqa: BLE001 - answer, never crash the instance
                responses.append(error_response(f"{type(e).__name__}: {e}", invalid=False))
        self._update_metrics()
        return responses

    def finalize(self):
        self.cache.close()
