"""CroCo: cross-lingual contrastive preference tuning on self-generations, as a Dagster pipeline."""

__version__ = "0.1.0"
