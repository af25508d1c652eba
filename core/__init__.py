"""adaptinf: adaptive edge-cloud DNN inference runtime."""

__version__ = "0.1.0"
