"""Writes the Triton model repository for a set of approximation variants.

A *variant* is one way to serve a prompt: ``k{K}`` (step-skip level K of the base model, starting
from a cached latent at step K) or ``fast`` (the smaller UNet with a short schedule). Each variant
gets its own denoiser model (so dynamic batching only ever merges same-K requests, which then
run in lockstep) and an ensemble ``t2i_<variant>`` that chains text_encoder -> denoiser -> vae_decoder.

The hand-written model code lives in ``model_repository/{text_encoder,vae_decoder,cache_retrieval}/1``
and in ``triton_backend`` (the UNet step and the denoiser loop, shared by several models); this
module writes every ``config.pbtxt`` and the one-line ``model.py`` of each UNet and denoiser, so
the K set is configuration. ``model_repository/`` in the project is this module's output for the defaults.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from tiny_model.models import LATENT_CHANNELS, LATENT_SIZE, POOLED_DIM, TEXT_DIM, TIME_IDS_DIM, TOKEN_LEN, IMAGE_SIZE

from orchestrator.paths import MODEL_REPOSITORY as PROJECT_REPOSITORY

HAND_WRITTEN = ("text_encoder", "vae_decoder", "cache_retrieval")
"""Models whose model.py is written by hand (the UNets and denoisers import theirs from triton_backend)."""


@dataclasses.dataclass(frozen=True)
class ModelDims:
    """Tensor shapes of the served model (per item, batch excluded). Defaults: the embedded tiny
    model; real SD-XL is 77 tokens, 2048 hidden, 1280 pooled, 4x128x128 latents, 1024 px."""

    token_len: int = TOKEN_LEN
    hidden_dim: int = TEXT_DIM
    pooled_dim: int = POOLED_DIM
    latent_shape: tuple[int, int, int] = (LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    image_size: int = IMAGE_SIZE
    time_ids_dim: int = TIME_IDS_DIM


@dataclasses.dataclass(frozen=True)
class RepositoryConfig:
    """What the generated repository serves. Defaults match the paper's K set of a 50-step schedule."""

    step_skip_levels: tuple[int, ...] = (0, 5, 10, 15, 20, 25)
    """K values, one variant each; K=0 is full quality."""
    num_inference_steps: int = 50
    """Length of the base model's full schedule."""
    fast_num_inference_steps: int = 20
    """Schedule length of the fast (smaller UNet) variant."""
    guidance_scale: float = 3.0
    max_batch_size: int = 8
    """Largest batch of prompts per request and per dynamic batch."""
    max_queue_delay_us: int = 2000
    """How long the denoisers wait to fill a batch; short, since a step costs ~10 ms here."""
    queue_timeout_s: float = 120.0
    """Triton rejects a denoiser request still queued after this long (queue policy default
    timeout; it also makes per-request timeouts effective, see the recipe), so a stuck model
    cannot hold requests forever."""
    denoiser_instances: int = 1
    unet_instances: int = 1
    cache_byte_budget: int = 256 * 2**20
    """Bytes the approximate cache may hold (latents + embeddings)."""
    cache_policy: str = "lcbfu"
    """Cache eviction policy: 'lcbfu' (least computationally beneficial and frequently used) or 'lru'."""
    cache_thresholds: tuple[tuple[int, float], ...] = ((5, 0.8561), (10, 0.9354), (15, 0.9735), (20, 0.9813), (25, 0.9999))
    """(K, minimum similarity) pairs from `argus calibrate-reuse` on the embedded model: per K the larger of
    the ground-truth quality threshold (`argus build-pairs`) and NIRVANA's published one
    (0.65/0.75/0.85/0.90/0.95 on real CLIP) mapped onto this encoder by the default stream's reuse."""
    dims: ModelDims = ModelDims()
    runtime: str = "onnxruntime"
    """How the Python-backend text_encoder, unet(s) and vae_decoder run the embedded model:
    'onnxruntime' (the graphs build_engines exports, written next to each model.py; 1.4x the
    images/s of torch through Triton here, `argus bench engines`) or 'torch'."""
    with_fast: bool = True
    """Serve the fast model as a variant (a pipeline without one, e.g. plain SD-XL, sets False)."""
    cache_url: str = ""
    """Where the probe and the denoisers reach the cache: "" is ``cache_retrieval`` in the same
    server (BLS), "host:port" a cache endpoint of its own (gRPC; ``argus serve --cache``)."""
    cache_budget_ms: float = 50.0
    """Time budget of one cache call from inside a worker; past it the request goes on as k0."""
    cache_candidates: int = 4
    """Sources per K a lookup returns besides the best (``LatentCache.candidates``): the front door
    may resume from a less similar one that its pair predictor expects to suit the prompt better."""

    def __post_init__(self):
        if self.runtime not in ("onnxruntime", "torch"):
            raise ValueError(f"runtime must be onnxruntime or torch, got {self.runtime!r}")
        if not self.step_skip_levels or 0 not in self.step_skip_levels:
            raise ValueError(f"step_skip_levels must include 0, got {self.step_skip_levels}")
        bad = [k for k in self.step_skip_levels if not 0 <= k < self.num_inference_steps]
        if bad:
            raise ValueError(f"step-skip levels {bad} are outside [0, {self.num_inference_steps})")

    @property
    def variants(self) -> list[str]:
        return [f"k{k}" for k in sorted(self.step_skip_levels)] + (["fast"] if self.with_fast else [])

    @property
    def cached_levels(self) -> list[int]:
        """The K > 0 levels, in the order of the probe's per-level outputs (ENTRY_IDS, SIMILARITY)."""
        return [k for k in sorted(self.step_skip_levels) if k > 0]


def variant_k(variant: str) -> int:
    """The step-skip level of a variant name (the fast variant starts from noise: 0)."""
    return int(variant[1:]) if variant.startswith("k") else 0


def ensemble_name(variant: str) -> str:
    return f"t2i_{variant}"


def denoiser_name(variant: str) -> str:
    return f"denoiser_{variant}"


def generation_name(variant: str) -> str:
    """The front door's generation ensemble: the probe's embeddings and a cache entry id in, an image out."""
    return f"gen_{variant}"


PROBE = "t2i_probe"


def _tensor(name: str, dtype: str, dims, optional: bool = False) -> str:
    opt = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(str(d) for d in dims)} ]{opt} }}'


def _io(kind: str, tensors: list[str]) -> str:
    return f"{kind} [\n" + ",\n".join(tensors) + "\n]\n"


def _params(params: dict[str, str]) -> str:
    return "".join(f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in params.items())


def _python_config(name, max_batch, inputs, outputs, instances=1, dynamic_batching_us=None, params=None, queue_timeout_s=None) -> str:
    text = f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
    text += _io("input", inputs) + _io("output", outputs)
    text += f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]\n"
    if dynamic_batching_us is not None:
        policy = ""
        if queue_timeout_s is not None:
            policy = (f" default_queue_policy {{ timeout_action: REJECT default_timeout_microseconds: {int(queue_timeout_s * 1e6)}"
                      " allow_timeout_override: true }")
        text += f"dynamic_batching {{ max_queue_delay_microseconds: {dynamic_batching_us}{policy} }}\n"
    return text + _params(params or {})


def _hidden(cfg: RepositoryConfig) -> str:
    return _tensor("ENCODER_HIDDEN_STATES", "TYPE_FP32", (cfg.dims.token_len, cfg.dims.hidden_dim))


def _pooled(cfg: RepositoryConfig) -> str:
    return _tensor("TEXT_EMBEDS", "TYPE_FP32", (cfg.dims.pooled_dim,))


def _image(cfg: RepositoryConfig) -> str:
    return _tensor("IMAGE", "TYPE_UINT8", (cfg.dims.image_size, cfg.dims.image_size, 3))


def text_encoder_config(cfg: RepositoryConfig) -> str:
    return _python_config("text_encoder", cfg.max_batch_size, [_tensor("PROMPT", "TYPE_STRING", (1,))], [_hidden(cfg), _pooled(cfg)], dynamic_batching_us=0,
                          params={"RUNTIME": cfg.runtime})


def unet_config(cfg: RepositoryConfig, name: str) -> str:
    inputs = [
        _tensor("SAMPLE", "TYPE_FP32", cfg.dims.latent_shape),
        _tensor("TIMESTEP", "TYPE_FP32", (1,)),
        _hidden(cfg),
        _pooled(cfg),
        _tensor("TIME_IDS", "TYPE_FP32", (cfg.dims.time_ids_dim,)),
    ]
    # Classifier-free guidance doubles the denoiser's batch; several denoisers may share a batch.
    return _python_config(
        name, 4 * cfg.max_batch_size, inputs, [_tensor("NOISE_PRED", "TYPE_FP32", cfg.dims.latent_shape)],
        instances=cfg.unet_instances, dynamic_batching_us=0, params={"UNET_NAME": name, "RUNTIME": cfg.runtime},
    )


def vae_decoder_config(cfg: RepositoryConfig) -> str:
    return _python_config(
        "vae_decoder", cfg.max_batch_size, [_tensor("LATENT", "TYPE_FP32", cfg.dims.latent_shape)],
        [_image(cfg)], dynamic_batching_us=0, params={"RUNTIME": cfg.runtime},
    )


def time_ids(dims: ModelDims) -> tuple[int, ...]:
    """SD-XL micro-conditioning for an uncropped square image: (h, w, top, left, target h, target w)."""
    return (dims.image_size, dims.image_size, 0, 0, dims.image_size, dims.image_size)


def _cache_params(cfg: RepositoryConfig) -> dict[str, str]:
    return {"CACHE_URL": cfg.cache_url, "CACHE_BUDGET_MS": str(cfg.cache_budget_ms)}


def denoiser_config(cfg: RepositoryConfig, name: str, k: int, fast: bool = False) -> str:
    """One variant's denoiser: K is fixed by its config, so a dynamic batch only holds same-K requests.
    It starts from LATENT (``t2i_<variant>``) or from the cache entry CACHE_ENTRY (``gen_<variant>``)."""
    inputs = [_hidden(cfg), _pooled(cfg), _tensor("SEED", "TYPE_INT64", (1,)), _tensor("LATENT", "TYPE_FP32", cfg.dims.latent_shape, optional=True),
              _tensor("CACHE_ENTRY", "TYPE_INT64", (1,), optional=True), _tensor("INSERT_TENANT", "TYPE_STRING", (1,), optional=True)]
    params = {
        **_cache_params(cfg),
        "UNET_MODEL": "unet_fast" if fast else "unet",
        "NUM_STEPS": str(cfg.fast_num_inference_steps if fast else cfg.num_inference_steps),
        "GUIDANCE_SCALE": str(cfg.guidance_scale),
        "STEP_SKIP_K": str(k),
        "SAVE_LEVELS": "" if fast else ",".join(map(str, sorted(cfg.step_skip_levels))),
        "LATENT_SHAPE": ",".join(map(str, cfg.dims.latent_shape)),
        "TIME_IDS": ",".join(map(str, time_ids(cfg.dims))),
    }
    return _python_config(
        name, cfg.max_batch_size, inputs,
        [_tensor("LATENT_OUT", "TYPE_FP32", cfg.dims.latent_shape), _tensor("K_USED", "TYPE_INT32", (1,)), *level_latents(cfg, fast)],
        instances=cfg.denoiser_instances, dynamic_batching_us=cfg.max_queue_delay_us, params=params, queue_timeout_s=cfg.queue_timeout_s,
    )


def level_latents(cfg: RepositoryConfig, fast: bool = False) -> list[str]:
    """Intermediate latents at each step-skip level (for the cache); none for the fast model."""
    return [] if fast else [_tensor("LEVEL_LATENTS", "TYPE_FP32", (len(cfg.step_skip_levels), *cfg.dims.latent_shape))]


def cache_retrieval_config(cfg: RepositoryConfig) -> str:
    cached = cfg.cached_levels
    thresholds = dict(cfg.cache_thresholds)
    inputs = [
        _pooled(cfg),
        _tensor("STEP_SKIP_K", "TYPE_INT32", (1,), optional=True),
        _tensor("TENANT", "TYPE_STRING", (1,), optional=True),
        _tensor("LEVEL_LATENTS", "TYPE_FP32", (len(cfg.step_skip_levels), *cfg.dims.latent_shape), optional=True),
        _tensor("ENTRY_ID", "TYPE_INT64", (1,), optional=True),
    ]
    outputs = [
        _tensor("ENTRY_IDS", "TYPE_INT64", (len(cached),)),
        _tensor("SIMILARITY", "TYPE_FP32", (len(cached),)),
        _tensor("LATENT", "TYPE_FP32", cfg.dims.latent_shape),
        _tensor("K", "TYPE_INT32", (1,)),
        *candidate_outputs(cfg),
    ]
    params = {
        "LEVELS": ",".join(map(str, cached)),
        "CANDIDATES": str(cfg.cache_candidates),
        "ALL_LEVELS": ",".join(map(str, sorted(cfg.step_skip_levels))),
        "EMBEDDING_DIM": str(cfg.dims.pooled_dim),
        "LATENT_SHAPE": ",".join(map(str, cfg.dims.latent_shape)),
        "BYTE_BUDGET": str(cfg.cache_byte_budget),
        "POLICY": cfg.cache_policy,
        "THRESHOLDS": ",".join(f"{k}:{thresholds.get(k, 0.95)}" for k in cached),
    }
    # One instance: a single writer, so the index never diverges between instances.
    return _python_config("cache_retrieval", cfg.max_batch_size, inputs, outputs, instances=1, dynamic_batching_us=0, params=params)


def candidate_outputs(cfg: RepositoryConfig) -> list[str]:
    """A lookup's sources per K beyond the best one (``LatentCache.candidates``): entry ids (-1 pad),
    similarities and the prompt embeddings they were stored under, so the front door can rank them
    by predicted quality."""
    cached = [k for k in cfg.step_skip_levels if k > 0]
    c = cfg.cache_candidates
    return [_tensor("CANDIDATE_IDS", "TYPE_INT64", (len(cached), c)), _tensor("CANDIDATE_SIMILARITY", "TYPE_FP32", (len(cached), c)),
            _tensor("CANDIDATE_EMBEDS", "TYPE_FP32", (len(cached), c, cfg.dims.pooled_dim))]


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'  {{ model_name: "{model}" model_version: -1 {ins} {outs} }}'


def ensemble_config(cfg: RepositoryConfig, variant: str) -> str:
    k = variant_k(variant)
    inputs = [_tensor("PROMPT", "TYPE_STRING", (1,)), _tensor("SEED", "TYPE_INT64", (1,))]
    den_in = {"ENCODER_HIDDEN_STATES": "hidden", "TEXT_EMBEDS": "pooled", "SEED": "SEED"}
    if k > 0:
        inputs.append(_tensor("LATENT", "TYPE_FP32", cfg.dims.latent_shape))
        den_in["LATENT"] = "LATENT"
    steps = [
        _step("text_encoder", {"PROMPT": "PROMPT"}, {"ENCODER_HIDDEN_STATES": "hidden", "TEXT_EMBEDS": "pooled"}),
        _step(denoiser_name(variant), den_in, {"LATENT_OUT": "latent", **({} if variant == "fast" else {"LEVEL_LATENTS": "LEVEL_LATENTS"})}),
        _step("vae_decoder", {"LATENT": "latent"}, {"IMAGE": "IMAGE"}),
    ]
    text = f'name: "{ensemble_name(variant)}"\nplatform: "ensemble"\nmax_batch_size: {cfg.max_batch_size}\n'
    outputs = [_image(cfg), *level_latents(cfg, variant == "fast")]
    text += _io("input", inputs) + _io("output", outputs)
    return text + "ensemble_scheduling { step [\n" + ",\n".join(steps) + "\n] }\n"


def probe_config(cfg: RepositoryConfig) -> str:
    """t2i_probe: the prompt's embeddings and the cache's best candidate per K, in one call."""
    cached = [k for k in cfg.step_skip_levels if k > 0]
    inputs = [_tensor("PROMPT", "TYPE_STRING", (1,)), _tensor("TENANT", "TYPE_STRING", (1,), optional=True)]
    outputs = [_hidden(cfg), _pooled(cfg), _tensor("ENTRY_IDS", "TYPE_INT64", (len(cached),)), _tensor("SIMILARITY", "TYPE_FP32", (len(cached),)),
               _tensor("CACHE_OK", "TYPE_BOOL", (1,)), *candidate_outputs(cfg)]
    return _python_config(PROBE, cfg.max_batch_size, inputs, outputs, dynamic_batching_us=0,
                          params={**_cache_params(cfg), "NUM_CACHED_LEVELS": str(len(cached)), "CANDIDATES": str(cfg.cache_candidates),
                                  "EMBEDDING_DIM": str(cfg.dims.pooled_dim)})


def generation_config(cfg: RepositoryConfig, variant: str) -> str:
    """gen_<variant>: denoiser -> vae_decoder on the probe's embeddings. K>0 variants take the chosen
    cache entry's id (the latent is fetched inside Triton); every base-model variant inserts its step
    latents into the cache under TENANT after answering."""
    k, fast = variant_k(variant), variant == "fast"
    inputs = [_hidden(cfg), _pooled(cfg), _tensor("SEED", "TYPE_INT64", (1,))]
    den_in = {"ENCODER_HIDDEN_STATES": "ENCODER_HIDDEN_STATES", "TEXT_EMBEDS": "TEXT_EMBEDS", "SEED": "SEED"}
    if k > 0:
        inputs.append(_tensor("CACHE_ENTRY", "TYPE_INT64", (1,)))
        den_in["CACHE_ENTRY"] = "CACHE_ENTRY"
    if not fast:
        inputs.append(_tensor("TENANT", "TYPE_STRING", (1,)))
        den_in["INSERT_TENANT"] = "TENANT"
    steps = [
        _step(denoiser_name(variant), den_in, {"LATENT_OUT": "latent", "K_USED": "K_USED"}),
        _step("vae_decoder", {"LATENT": "latent"}, {"IMAGE": "IMAGE"}),
    ]
    text = f'name: "{generation_name(variant)}"\nplatform: "ensemble"\nmax_batch_size: {cfg.max_batch_size}\n'
    text += _io("input", inputs) + _io("output", [_image(cfg), _tensor("K_USED", "TYPE_INT32", (1,))])
    return text + "ensemble_scheduling { step [\n" + ",\n".join(steps) + "\n] }\n"


SHIM = '''"""{name}: triton_backend.{target} with this model's own config (written by orchestrator.triton.repository)."""

from triton_backend.{target} import TritonPythonModel  # noqa: F401
'''


def render_repository(cfg: RepositoryConfig) -> dict[str, str]:
    """Relative path -> file text for every generated file."""
    files = {
        "text_encoder/config.pbtxt": text_encoder_config(cfg),
        "unet/config.pbtxt": unet_config(cfg, "unet"),
        "unet/1/model.py": SHIM.format(name="unet", target="unet"),
        "vae_decoder/config.pbtxt": vae_decoder_config(cfg),
        "cache_retrieval/config.pbtxt": cache_retrieval_config(cfg),
        f"{PROBE}/config.pbtxt": probe_config(cfg),
        f"{PROBE}/1/model.py": SHIM.format(name=PROBE, target="probe"),
    }
    if cfg.with_fast:
        files["unet_fast/config.pbtxt"] = unet_config(cfg, "unet_fast")
        files["unet_fast/1/model.py"] = SHIM.format(name="unet_fast", target="unet")
    for variant in cfg.variants:
        name = denoiser_name(variant)
        files[f"{name}/config.pbtxt"] = denoiser_config(cfg, name, variant_k(variant), fast=variant == "fast")
        files[f"{name}/1/model.py"] = SHIM.format(name=name, target="denoiser")
        files[f"{ensemble_name(variant)}/config.pbtxt"] = ensemble_config(cfg, variant)
        files[f"{ensemble_name(variant)}/1/.gitkeep"] = ""
        files[f"{generation_name(variant)}/config.pbtxt"] = generation_config(cfg, variant)
        files[f"{generation_name(variant)}/1/.gitkeep"] = ""
    return files


def write_repository(cfg: RepositoryConfig, out_dir: Path) -> list[str]:
    """Write a complete repository to ``out_dir`` (copying the hand-written models when elsewhere)."""
    out_dir = Path(out_dir)
    if out_dir.resolve() != PROJECT_REPOSITORY.resolve():
        for model in HAND_WRITTEN:
            shutil.copytree(PROJECT_REPOSITORY / model / "1", out_dir / model / "1", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    files = render_repository(cfg)
    for rel, text in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:  # unchanged files keep their mtime (no reload)
            path.write_text(text)
    if cfg.runtime == "onnxruntime":
        from build_engines.embedded import ensure_onnx  # imports torch: only when graphs are served

        ensure_onnx(out_dir, [m for m in ONNX_MODELS if m != "unet_fast" or cfg.with_fast])
    return sorted(files)


ONNX_MODELS = ("text_encoder", "unet", "unet_fast", "vae_decoder")
"""The models that run an exported graph when runtime is onnxruntime (model.onnx next to model.py)."""


CACHE_MODELS = ["cache_retrieval", "text_encoder", PROBE]
"""What a cache endpoint of its own serves (the probe encodes the prompt next to the cache)."""


def models_to_load(cfg: RepositoryConfig, variants: list[str] | None = None, with_cache: bool = True) -> list[str]:
    """Ensembles load their steps, but BLS targets (the UNets, the text encoder and the cache, for
    the probe) must be loaded explicitly. ``with_cache`` False: a worker whose cache is elsewhere."""
    variants = variants or cfg.variants
    unets = {"unet_fast" if v == "fast" else "unet" for v in variants}
    return ((CACHE_MODELS if with_cache else ["text_encoder", PROBE]) + sorted(unets) + [ensemble_name(v) for v in variants]
            + [generation_name(v) for v in variants])
