"""Prompt -> fixed-length token ids for one text tower, from a ``tokenizers`` JSON (the embedded
model's BPE, or SD-XL's CLIP tokenizer converted by ``pipeline_dir``)."""

from __future__ import annotations

import numpy as np


class TowerTokenizer:
    def __init__(self, tokenizer_json: str, token_len: int, special_ids: dict[str, int]):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_str(tokenizer_json)
        self.len, self.ids = token_len, special_ids

    def __call__(self, prompts: list[str]) -> np.ndarray:
        """(N, token_len) int64, padded with the pad id."""
        out = np.full((len(prompts), self.len), self.ids["pad"], dtype=np.int64)
        for i, enc in enumerate(self.tok.encode_batch(list(prompts))):
            if self.ids.get("manual_special"):
                ids = [self.ids["bos"]] + enc.ids[: self.len - 2] + [self.ids["eos"]]
            else:  # the tokenizer adds bos/eos itself; keep eos last when truncating
                ids = enc.ids if len(enc.ids) <= self.len else enc.ids[: self.len - 1] + [self.ids["eos"]]
            out[i, : len(ids)] = ids
        return out
