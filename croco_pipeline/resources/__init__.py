"""Dagster resources: storage (Parquet IO manager, checkpoints, SQL catalogue), the policy model,
the reward scorer and the run settings. Each wraps a plain class from ``croco_pipeline.core``."""
