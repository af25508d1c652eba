"""adaptinf-cloud: the worker that runs tails and full models for devices."""
