"""Build toolchain: data, models, butterfly training and bundle export (needs torch)."""
