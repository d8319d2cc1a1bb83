"""Everything that talks to the Triton Inference Server: its process, the repository it serves, and its clients."""
