"""The approximate (intermediate-latent) cache."""
