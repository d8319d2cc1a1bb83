"""Everything that talks to (or runs inside) the Triton Inference Server."""
