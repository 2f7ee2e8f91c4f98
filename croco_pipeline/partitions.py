"""The pipeline is partitioned by language: one dynamic partition per ISO 639-1 code.

Partitions are dynamic so a new language is added at run time (``croco languages add``, or from the
UI) without a code change; every per-language asset shares this definition.
"""

from dagster import DynamicPartitionsDefinition

language_partitions = DynamicPartitionsDefinition(name="language")
