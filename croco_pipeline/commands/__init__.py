"""Sub-commands of the `croco` command line (see croco_pipeline.cli)."""
