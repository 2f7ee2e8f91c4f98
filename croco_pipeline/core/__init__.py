"""Domain logic of the pipeline: plain functions and classes that never import Dagster.

Each module is one concern (prompts, generation, rewards, pairing, training, evaluation); the Dagster
assets in ``croco_pipeline.assets`` are thin wrappers around them.
"""
