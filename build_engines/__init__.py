"""Export diffusers SD-XL-format pipelines (real SD-XL, or the embedded tiny model) to ONNX and
TensorRT, and write them as a Triton model repository the same orchestrator drives."""
