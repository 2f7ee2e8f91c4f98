"""The run settings as a Dagster resource: ``core.settings.RunSettings`` (every field, its default and its
help) with ``ConfigurableResource`` mixed in, so every field can be changed per run in the Dagster
launchpad under ``resources.settings.config``. Profiles (``croco_pipeline.profiles``) set their values."""

from __future__ import annotations

from dagster import ConfigurableResource

from croco_pipeline.core.settings import RunSettings


class PipelineSettings(ConfigurableResource, RunSettings):
    """Run settings shared by the assets: how many samples, how long, which pairing target, how to train."""
