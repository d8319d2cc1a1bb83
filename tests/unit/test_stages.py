"""Training in stages: the gate ships only what measures better, records every stage, and the
whole-caption stage leaves every earlier text position exactly as it was."""

from __future__ import annotations

import dataclasses
import json
import shutil

import torch

import tiny_model.stages as st
from tiny_model.models import SEED_TOKEN_LEN, WEIGHTS_DIR, load_clip, load_tokenizer


def _metrics(vae: float, k0: list[float], fast: list[float] = (0.0, 0.0, 0.0, 0.0)) -> dict:
    kinds = st.KINDS
    out = {"vae_roundtrip": {k: {"gt_all_correct": vae} for k in kinds}, "k0": {k: {"gt_all_correct": q} for k, q in zip(kinds, k0)},
           "fast": {k: {"gt_all_correct": q} for k, q in zip(kinds, fast)}}
    out["mean_gt_all_correct"] = {key: sum(out[key][k]["gt_all_correct"] for k in kinds) / 4 for key in ("vae_roundtrip", "k0", "fast")}
    return out


def test_the_gate_ships_only_a_measured_improvement():
    before = _metrics(0.5, [0.5, 0.1, 0.0, 0.5])
    assert st.better(before, _metrics(0.6, [0.5, 0.1, 0.0, 0.5]))  # the round trip rose, nothing fell
    assert st.better(before, _metrics(0.5, [0.6, 0.2, 0.0, 0.5]))
    assert not st.better(before, before)  # no change is no reason to ship
    assert not st.better(before, _metrics(0.4, [0.9, 0.9, 0.9, 0.9]))  # the VAE got worse
    assert not st.better(before, _metrics(0.6, [0.9, 0.0, 0.0, 0.3]))  # counting fell by 20 points


def test_a_fast_only_stage_ships_on_a_fast_rise_beyond_noise():
    """k0 and the round trip are bit for bit the same when only the fast UNet trains."""
    before = _metrics(0.9, [0.9, 0.8, 0.4, 1.0], fast=[0.2, 0.0, 0.0, 0.5])
    assert st.better(before, _metrics(0.9, [0.9, 0.8, 0.4, 1.0], fast=[0.6, 0.1, 0.0, 0.6]))
    assert not st.better(before, _metrics(0.9, [0.9, 0.8, 0.4, 1.0], fast=[0.25, 0.0, 0.0, 0.5]))  # within noise
    assert not st.better(before, _metrics(0.9, [0.9, 0.8, 0.4, 1.0], fast=[0.9, 0.3, 0.0, 0.1]))  # counting fell by 40
    assert not st.better(before, _metrics(0.9, [0.6, 0.8, 0.4, 1.0], fast=[0.9, 0.3, 0.1, 0.6]))  # k0 fell


def test_extended_positions_leave_earlier_hidden_states_unchanged():
    """Causal attention: a caption that fit in 24 tokens gets the same hidden states at 32."""
    tok = load_tokenizer()
    clip = load_clip(tokenizer=tok)
    short = tok.with_token_len(SEED_TOKEN_LEN)
    if clip.config.text_config.max_position_embeddings != SEED_TOKEN_LEN:  # weights past stage 2: rebuild a 24-position copy
        state = {k: (v[:SEED_TOKEN_LEN] if k == "text_model.embeddings.position_embedding.weight" else v) for k, v in clip.state_dict().items()
                 if not k.endswith("position_ids")}
        from transformers import CLIPModel

        from tiny_model.models import clip_config

        clip = CLIPModel(clip_config(tok.vocab_size, SEED_TOKEN_LEN))
        clip.load_state_dict(state, strict=False)
        clip.eval()
    long_clip = st.extend_positions(clip, 32)
    prompts = ["a red circle", "a small blue square at the top on a gray background"]
    with torch.no_grad():
        a = clip.text_model(input_ids=torch.from_numpy(short(prompts))).last_hidden_state
        b = long_clip.text_model(input_ids=torch.from_numpy(tok.with_token_len(32)(prompts))).last_hidden_state
    assert b.shape[1] == 32
    torch.testing.assert_close(a, b[:, :SEED_TOKEN_LEN], rtol=0, atol=1e-5)


def test_a_stage_is_recorded_and_shipped_only_when_better(tmp_path, monkeypatch):
    src = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, src)
    vae_before = (src / "vae.safetensors").read_bytes()
    monkeypatch.setitem(st.STAGES, "decoder_objects", dataclasses.replace(st.STAGES["decoder_objects"], steps=2, num_scenes=64, batch=8))
    gate = st.GateConfig(roundtrip_scenes_per_kind=4, prompts_per_kind=1, seeds=1)
    never = lambda before, after: False  # noqa: E731
    monkeypatch.setattr(st, "better", never)
    record = st.run_stage("decoder_objects", src, ckpt_dir=tmp_path / "ckpt", gate=gate, log=lambda *_: None)
    assert record["shipped"] is False
    assert (src / "vae.safetensors").read_bytes() == vae_before  # not better: the shipped weights are untouched
    records = json.loads((src / st.STAGES_FILE).read_text())
    assert records[-1]["stage"] == "decoder_objects" and {"recipe", "steps", "wall_s", "before", "after"} <= set(records[-1])
    assert (tmp_path / "ckpt" / "candidate" / "vae.safetensors").exists()  # the candidate is kept beside the checkpoints
    assert not list(src.glob("*.pt"))


def test_pooling_at_eos_keeps_every_hidden_state_and_reads_the_whole_caption():
    from transformers import CLIPModel

    from tiny_model.models import clip_config

    tok = load_tokenizer()
    clip = load_clip(tokenizer=tok)
    if tok.eos_id != 2:  # weights past stage 3: rebuild the legacy copy (ids and rows exchanged back)
        state = clip.state_dict()
        emb = state["text_model.embeddings.token_embedding.weight"].clone()
        emb[[2, 3]] = emb[[3, 2]]
        state["text_model.embeddings.token_embedding.weight"] = emb
        tok = tok.with_swapped_ids("<eos>", "<unk>")
        clip = CLIPModel(clip_config(tok.vocab_size, tok.token_len, 2))
        clip.load_state_dict(state)
        clip.eval()
    assert tok.eos_id == 2
    new_tok, new_clip = st.pool_at_eos(tok, clip)
    assert new_tok.eos_id == 3 and new_tok.special_id("<unk>") == 2 and new_clip.config.text_config.eos_token_id == 3
    prompts = ["a red circle on the left", "a red circle on the right", ""]
    ids = torch.from_numpy(new_tok(prompts))
    with torch.no_grad():
        old = clip.text_model(input_ids=torch.from_numpy(tok(prompts)))
        new = new_clip.text_model(input_ids=ids)
    torch.testing.assert_close(old.last_hidden_state, new.last_hidden_state, rtol=0, atol=0)
    eos_at = (ids == 3).int().argmax(-1)
    torch.testing.assert_close(new.pooler_output, new.last_hidden_state[torch.arange(3), eos_at], rtol=0, atol=0)
    assert not torch.allclose(new.pooler_output[0], new.pooler_output[1])  # 'left' and 'right' now reach the pooled state
    assert st.pool_at_eos(new_tok, new_clip)[0] is new_tok  # idempotent


def test_the_shipped_weights_record_every_stage_train_embedded_replays():
    """``argus train-embedded`` replays ``STAGES`` in order: the shipped weights' record must name the
    same stages, with the same recipes, and the weights' meta the shipped ones among them."""
    records = json.loads((WEIGHTS_DIR / st.STAGES_FILE).read_text())
    assert [r["stage"] for r in records] == list(st.STAGES)
    for r in records:  # a field added since a stage ran is absent from its record and defaults to its old behaviour
        recipe = json.loads(json.dumps(dataclasses.asdict(st.STAGES[r["stage"]])))
        assert r["recipe"] == {k: recipe[k] for k in r["recipe"]}, r["stage"]
    meta = json.loads((WEIGHTS_DIR / "meta.json").read_text())
    assert meta["stages"] == [r["stage"] for r in records if r["shipped"]]
