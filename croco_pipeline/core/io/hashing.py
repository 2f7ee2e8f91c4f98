"""One configuration hash for the whole pipeline: what shaped a table (a sample's ``config_hash``
column) and what a staged chunk was computed under (its staging folder) are hashed the same way."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def config_hash(config: dict, inputs: "pl.DataFrame | None" = None) -> str:
    """16 hex digits of SHA-256 over ``config`` (JSON, keys sorted; other values as text) and, when
    given, the content and column names of the ``inputs`` table."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    if inputs is not None:
        digest.update(inputs.hash_rows(seed=0).to_numpy().tobytes())
        digest.update(",".join(inputs.columns).encode())
    return digest.hexdigest()[:16]
