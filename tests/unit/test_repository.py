"""The generated model repository: committed files match the generator, configs are validated."""

from __future__ import annotations

import pytest

from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, render_repository, write_repository


def test_committed_repository_is_the_generators_output():
    for rel, text in render_repository(RepositoryConfig()).items():
        assert (PROJECT_REPOSITORY / rel).read_text() == text, f"{rel} is stale: run `argus repo write`"


def test_other_k_sets_write_a_complete_repository(tmp_path):
    cfg = RepositoryConfig(step_skip_levels=(0, 30), num_inference_steps=40)
    write_repository(cfg, tmp_path)
    assert (tmp_path / "cache_retrieval" / "1" / "model.py").exists()  # hand-written models are copied
    assert "from triton_backend.denoiser import" in (tmp_path / "denoiser_k30" / "1" / "model.py").read_text()
    assert 'string_value: "30"' in (tmp_path / "denoiser_k30" / "config.pbtxt").read_text()
    assert models_to_load(cfg) == ["cache_retrieval", "text_encoder", "t2i_probe", "unet", "unet_fast", "t2i_k0", "t2i_k30", "t2i_fast",
                                   "gen_k0", "gen_k30", "gen_fast"]


@pytest.mark.parametrize("levels", [(5, 10), (0, 50), (0, -1)])
def test_invalid_k_sets_are_rejected(levels):
    with pytest.raises(ValueError):
        RepositoryConfig(step_skip_levels=levels)
