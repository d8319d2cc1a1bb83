"""Argus-style quality-aware text-to-image serving: an orchestrator in front of NVIDIA Triton."""

__version__ = "0.1.0"
