"""End to end through a real tritonserver: the t2i ensembles, step skipping, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from orchestrator.triton.client import generate, generate_with_levels, infer_input, t2i_inputs
from orchestrator.triton.repository import RepositoryConfig, ensemble_name

pytestmark = pytest.mark.triton
REPO = RepositoryConfig()
LEVELS = sorted(REPO.step_skip_levels)


def unet_executions(client, model: str = "unet") -> int:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats["inference_stats"].get("success", {}).get("count", 0))


def test_every_model_is_ready(client):
    index = {m["name"]: m.get("state") for m in client.get_model_repository_index(as_json=True)["models"]}
    expected = {"text_encoder", "unet", "unet_fast", "vae_decoder", "cache_retrieval", "t2i_probe"}
    expected |= {ensemble_name(v) for v in REPO.variants} | {f"denoiser_{v}" for v in REPO.variants} | {f"gen_{v}" for v in REPO.variants}
    assert {name for name, state in index.items() if state == "READY"} == expected


def test_batch_of_three_prompts_gives_three_images(client):
    images = generate(client, ["a red circle", "two small blue squares", "a photo of a cat"], [0, 1, 2])
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    # Not one image repeated: each prompt of the batch was really generated.
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])


def test_same_seed_same_image_other_seed_other_image(client):
    a = generate(client, ["a large green triangle on the left"], [7])
    b = generate(client, ["a large green triangle on the left"], [7])
    c = generate(client, ["a large green triangle on the left"], [8])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_k10_with_supplied_latent_runs_exactly_40_unet_steps(client):
    latent = np.random.RandomState(0).randn(1, 4, 8, 8).astype(np.float32)
    before = unet_executions(client)
    images = generate(client, ["a red circle"], [0], "k10", latent)
    assert images.shape == (1, 32, 32, 3)
    assert unet_executions(client) - before == REPO.num_inference_steps - 10


def test_resuming_from_own_level_latent_reproduces_full_generation(client):
    """The step-skip contract: K=0 == (steps 0..K-1) then t2i_k{K} from the latent at step K."""
    prompt, seed = "a small purple square at the top on a white background", 3
    full, levels = generate_with_levels(client, [prompt], [seed], "k0")
    assert levels.shape == (1, len(LEVELS), 4, 8, 8) and np.isfinite(levels).all()
    for k in (10, 25):
        resumed = generate(client, [prompt], [seed], f"k{k}", levels[:, LEVELS.index(k)])
        assert np.abs(resumed.astype(int) - full.astype(int)).max() <= 1


def test_k_variant_reports_only_levels_it_passed(client):
    latent = np.zeros((1, 4, 8, 8), np.float32)
    _, levels = generate_with_levels(client, ["a red circle"], [0], "k15", latent)
    done = [k >= 15 for k in LEVELS]
    assert np.isfinite(levels[0, done]).all() and np.isnan(levels[0, [not d for d in done]]).all()


def test_fast_variant_uses_the_fast_unet(client):
    before = unet_executions(client, "unet_fast")
    images = generate(client, ["a red circle", "a blue square"], [0, 1], "fast")
    assert images.shape == (2, 32, 32, 3)
    assert unet_executions(client, "unet_fast") - before == REPO.fast_num_inference_steps


@pytest.mark.parametrize(
    "case",
    ["unknown_model", "empty_prompt", "prompt_100kb", "invalid_utf8", "wrong_dtype", "k_without_latent", "nan_latent"],
)
def test_bad_input_gets_clear_error_and_server_stays_up(client, triton, case):
    model, inputs = "t2i_k0", None
    if case == "unknown_model":
        model, inputs = "t2i_k99", t2i_inputs(["a red circle"], [0])
    elif case == "empty_prompt":
        inputs = t2i_inputs([""], [0])
    elif case == "prompt_100kb":
        inputs = t2i_inputs(["a" * 100_000], [0])
    elif case == "invalid_utf8":
        inputs = [infer_input("PROMPT", np.array([b"\xff\xfe red"], dtype=np.object_).reshape(1, 1), "BYTES"), t2i_inputs(["x"], [0])[1]]
    elif case == "wrong_dtype":
        inputs = [t2i_inputs(["a red circle"], [0])[0], infer_input("SEED", np.zeros((1, 1), np.float32), "FP32")]
    elif case == "k_without_latent":
        model, inputs = "t2i_k10", t2i_inputs(["a red circle"], [0])
    elif case == "nan_latent":
        model, inputs = "t2i_k10", t2i_inputs(["a red circle"], [0], np.full((1, 4, 8, 8), np.nan, np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer(model, inputs)
    status, message = err.value.status(), err.value.message()
    expected = {
        "unknown_model": ("StatusCode.NOT_FOUND", "unknown model"),
        "empty_prompt": ("StatusCode.INVALID_ARGUMENT", "prompt is empty"),
        "prompt_100kb": ("StatusCode.INVALID_ARGUMENT", "100000 bytes"),
        "invalid_utf8": ("StatusCode.INVALID_ARGUMENT", "not valid UTF-8"),
        "wrong_dtype": ("StatusCode.INVALID_ARGUMENT", "data-type"),
        "k_without_latent": ("StatusCode.INVALID_ARGUMENT", "LATENT"),
        "nan_latent": ("StatusCode.INVALID_ARGUMENT", "NaN"),
    }[case]
    assert status == expected[0], (status, message)
    assert expected[1].lower() in message.lower(), message
    assert triton.is_ready()
    assert generate(client, ["a red circle"], [0]).shape == (1, 32, 32, 3)


def test_bad_request_in_a_dynamic_batch_fails_alone(client):
    """Concurrent good and bad requests batched together: only the bad one errors."""
    results = {}

    def callback(name):
        def cb(result=None, error=None):  # the exact parameter names tritonclient uses (gotcha G7)
            results[name] = error if error is not None else result.as_numpy("IMAGE")

        return cb

    for name, prompt in (("good1", "a red circle"), ("bad", ""), ("good2", "a blue square")):
        client.async_infer("t2i_k0", t2i_inputs([prompt], [0]), callback(name))
    import time

    deadline = time.time() + 60
    while len(results) < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert isinstance(results["bad"], InferenceServerException)
    assert results["good1"].shape == (1, 32, 32, 3) and results["good2"].shape == (1, 32, 32, 3)
