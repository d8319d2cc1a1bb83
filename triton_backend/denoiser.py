"""denoiser_<variant>: the scheduler loop from step K to the end, calling the ``unet`` model through BLS.

K (the step-skip level) is fixed per model by the config parameter STEP_SKIP_K, so that each
variant's model batches only same-K requests and they run in lockstep.
K = 0 starts from per-request seeded noise; K > 0 starts from a cached intermediate latent of a
similar prompt and runs NUM_STEPS - K UNet steps. That latent is either the LATENT input or, in
the front door's ``gen_<variant>`` ensembles, fetched here by its CACHE_ENTRY id through the
cache link (``triton_backend.cache_link``); when the entry is gone or the cache does not answer in
its budget, the request runs from seeded noise at K=0 instead, and K_USED says so. With
INSERT_TENANT the generation's step latents are inserted into the cache by a background thread,
after the response, never on its path.

The embedded model's shapes and unconditional embedding are the defaults; a repository written by
build_engines (e.g. real SD-XL) sets LATENT_SHAPE and TIME_IDS and ships ``uncond.npz`` (the
empty prompt's hidden states and pooled embedding) in each denoiser's version directory.
"""

import json
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from triton_backend.batching import BadRequest, decode_tenants, input_array, run_batched, set_threads
from triton_backend.cache_link import CacheLink
from tiny_model.models import LATENT_CHANNELS, LATENT_SIZE, load_clip, load_tokenizer
from tiny_model.pipeline import denoise, encode_prompts, initial_noise

LATENT_SHAPE = (LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)


class TritonPythonModel:
    def initialize(self, args):
        set_threads()
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.unet_model = params.get("UNET_MODEL", "unet")
        self.num_steps = int(params.get("NUM_STEPS", "50"))
        self.guidance_scale = float(params.get("GUIDANCE_SCALE", "3.0"))
        self.k = int(params["STEP_SKIP_K"])
        self.levels = [int(x) for x in params.get("SAVE_LEVELS", "").split(",") if x]
        self.latent_shape = tuple(int(x) for x in params.get("LATENT_SHAPE", ",".join(map(str, LATENT_SHAPE))).split(","))
        self.cache = CacheLink.from_params(params)
        self.time_ids = np.array([float(x) for x in params["TIME_IDS"].split(",")], np.float32) if "TIME_IDS" in params else None
        # The unconditional (empty-prompt) embedding for classifier-free guidance, computed once.
        uncond = Path(args["model_repository"]) / args["model_version"] / "uncond.npz"
        if uncond.exists():
            z = np.load(uncond)
            self.uncond = (torch.from_numpy(z["hidden"]), torch.from_numpy(z["pooled"]))
        else:
            tokenizer = load_tokenizer()
            self.uncond = encode_prompts(load_clip(tokenizer=tokenizer), tokenizer, [""])

    def _parse(self, request):
        hidden = input_array(request, "ENCODER_HIDDEN_STATES")
        pooled = input_array(request, "TEXT_EMBEDS")
        seed = input_array(request, "SEED").reshape(-1)
        n = hidden.shape[0]
        insert = self._insert_tenants(request, n)
        k = self.k
        latent = input_array(request, "LATENT", required=False)
        entry = input_array(request, "CACHE_ENTRY", required=False)
        if k > 0 and latent is None and entry is not None:
            latent = self._fetch(entry.reshape(-1), [t or "" for t in insert], pooled)
            k = k if latent is not None else 0  # evicted or no cache: full quality from seeded noise
        if k > 0:
            if latent is None:
                raise BadRequest(f"STEP_SKIP_K={k} needs a LATENT or a CACHE_ENTRY to start from")
            if latent.shape[1:] != self.latent_shape or latent.shape[0] != n:
                raise BadRequest(f"LATENT must have shape [{n}, {', '.join(map(str, self.latent_shape))}], got {list(latent.shape)}")
            if not np.isfinite(latent).all():
                raise BadRequest("LATENT contains NaN or Inf")
        else:
            latent = initial_noise(seed, self.latent_shape).numpy()
        return {"hidden": hidden, "pooled": pooled, "latent": latent.astype(np.float32), "k": np.full(n, k), "insert": insert}

    def _insert_tenants(self, request, n):
        """Per item, the tenant to insert its step latents under ("" default), or None: no insert."""
        tenants = decode_tenants(request, "INSERT_TENANT", n, empty_is_default=True) if self.levels else None
        return [None] * n if tenants is None else tenants

    def _fetch(self, entries, tenants, pooled):
        """The cached latents of ``entries`` at this model's K, or None when any is gone or the cache is down."""
        got = self.cache.fetch(entries, self.k, tenants, pooled)
        return got[0] if got is not None and got[1].all() else None

    def _unet_step(self, x, t, hid, pool, time_ids):
        inputs = [
            pb_utils.Tensor("SAMPLE", x.numpy()),
            pb_utils.Tensor("TIMESTEP", t.numpy().reshape(-1, 1)),
            pb_utils.Tensor("ENCODER_HIDDEN_STATES", hid.numpy()),
            pb_utils.Tensor("TEXT_EMBEDS", pool.numpy()),
            pb_utils.Tensor("TIME_IDS", time_ids.numpy()),
        ]
        req = pb_utils.InferenceRequest(model_name=self.unet_model, requested_output_names=["NOISE_PRED"], inputs=inputs)
        resp = req.exec()
        if resp.has_error():
            raise RuntimeError(f"{self.unet_model}: {resp.error().message()}")
        return torch.from_numpy(pb_utils.get_output_tensor_by_name(resp, "NOISE_PRED").as_numpy())

    def _compute(self, b):
        # LEVEL_LATENTS[:, j] is the latent at the start of step levels[j] (what the cache stores
        # for step-skip level levels[j]); NaN where the generation started after that level.
        saved = np.full((len(b["k"]), len(self.levels), *self.latent_shape), np.nan, dtype=np.float32)

        def on_step(i, latents):
            if i in self.levels:
                saved[:, self.levels.index(i)] = latents.numpy()

        latents = denoise(
            torch.from_numpy(b["latent"]),
            torch.from_numpy(b["hidden"]),
            torch.from_numpy(b["pooled"]),
            *self.uncond,
            self._unet_step,
            k=int(b["k"][0]),
            num_inference_steps=self.num_steps,
            guidance_scale=self.guidance_scale,
            is_cancelled=self._all_cancelled,
            on_step=on_step,
            time_ids=self.time_ids,
        )
        keep = [i for i, t in enumerate(b["insert"]) if t is not None]
        if keep:
            self.cache.insert_later(b["pooled"][keep], saved[keep], [b["insert"][i] for i in keep])
        out = {"LATENT_OUT": latents.numpy(), "K_USED": b["k"].astype(np.int32).reshape(-1, 1)}
        return {**out, "LEVEL_LATENTS": saved} if self.levels else out

    def execute(self, requests):
        self._requests = requests
        # Requests whose cached latent was gone start at K=0: a group of their own (lockstep per K).
        return run_batched(requests, self._parse, self._compute, group_key=lambda p: int(p["k"][0]))

    def _all_cancelled(self):
        return all(r.is_cancelled() for r in self._requests)

    def finalize(self):
        """Send the step latents still queued for the cache before the instance goes (bounded wait)."""
        self.cache.flush()
