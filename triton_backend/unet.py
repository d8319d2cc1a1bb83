"""unet (and unet_fast): one denoising step, SD-XL conditioning -> noise prediction.

Which weights to serve comes from the config parameter UNET_NAME, so the base and the fast
model share this file.
"""

import json

import torch

from triton_backend.batching import input_array, onnx_session, run_batched, set_threads
from tiny_model.models import UNET_SPECS, load_unet

INPUTS = ("SAMPLE", "TIMESTEP", "ENCODER_HIDDEN_STATES", "TEXT_EMBEDS", "TIME_IDS")


class TritonPythonModel:
    def initialize(self, args):
        set_threads()
        params = json.loads(args["model_config"]).get("parameters", {})
        name = params.get("UNET_NAME", {}).get("string_value", "unet")
        self.session = onnx_session(args)  # the exported graph (RUNTIME onnxruntime), else torch
        self.unet = None if self.session is not None else load_unet(UNET_SPECS[name])

    def _parse(self, request):
        return {name: input_array(request, name) for name in INPUTS}

    @torch.inference_mode()
    def _compute(self, b):
        if self.session is not None:
            return {"NOISE_PRED": self.session.run(["NOISE_PRED"], b)[0]}
        t = {k: torch.from_numpy(v) for k, v in b.items()}
        out = self.unet(
            t["SAMPLE"],
            t["TIMESTEP"].reshape(-1),
            encoder_hidden_states=t["ENCODER_HIDDEN_STATES"],
            added_cond_kwargs={"text_embeds": t["TEXT_EMBEDS"], "time_ids": t["TIME_IDS"]},
        ).sample
        return {"NOISE_PRED": out.numpy()}

    def execute(self, requests):
        return run_batched(requests, self._parse, self._compute)
