"""vae_decoder: latent -> uint8 RGB image (H, W, 3)."""

import numpy as np
import torch

from triton_backend.batching import BadRequest, input_array, onnx_session, run_batched, set_threads
from tiny_model.models import load_vae


class TritonPythonModel:
    def initialize(self, args):
        set_threads()
        self.session = onnx_session(args)  # the exported graph includes the uint8 post-processing
        if self.session is None:
            self.vae, self.scaling = load_vae()

    def _parse(self, request):
        latent = input_array(request, "LATENT")
        if not np.isfinite(latent).all():
            raise BadRequest("LATENT contains NaN or Inf")
        return {"LATENT": latent}

    @torch.inference_mode()
    def _compute(self, b):
        if self.session is not None:
            return {"IMAGE": self.session.run(["IMAGE"], {"LATENT": b["LATENT"]})[0]}
        x = self.vae.decode(torch.from_numpy(b["LATENT"]) / self.scaling).sample
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return {"IMAGE": x.permute(0, 2, 3, 1).contiguous().numpy()}

    def execute(self, requests):
        return run_batched(requests, self._parse, self._compute)
