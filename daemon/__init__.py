"""adaptinfd: the per-frame runtime daemon."""
