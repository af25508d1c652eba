"""Policies: per frame, (frame context, telemetry, profile) -> plan."""
