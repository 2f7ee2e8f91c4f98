"""`croco sql`: views over the Parquet layout, read-only, output formats."""

import json

import polars as pl
import pytest

from croco_pipeline.core.io import atomic, catalog


@pytest.fixture()
def data_dir(tmp_path):
    base = tmp_path / "croco_data"
    for language, scores in {"da": [1.0, 0.5, -1.0], "ga": [0.2, 0.1]}.items():
        frame = pl.DataFrame(
            {
                "prompt_id": [f"p{i}" for i in range(len(scores))],
                "language": [language] * len(scores),
                "chosen_score": scores,
                "rejected_score": [score - 1 for score in scores],
            }
        )
        atomic.write_parquet(frame, str(base / "preference_pairs" / f"language={language}" / "data.parquet"))
    return base


def test_views_read_every_language_partition(data_dir):
    result = catalog.query(str(data_dir), "SELECT language, count(*) AS n FROM preference_pairs GROUP BY 1 ORDER BY 1")
    assert result.to_dicts() == [{"language": "da", "n": 3}, {"language": "ga", "n": 2}]
    assert catalog.available_tables(catalog.open_catalog(str(data_dir))) == ["preference_pairs"]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE t AS SELECT 1",
        "COPY (SELECT * FROM preference_pairs) TO 'out.csv'",
        "ATTACH 'other.db' AS other",
        "INSTALL httpfs",
        "SET threads = 1",
        "SELECT 1; DROP VIEW preference_pairs",
    ],
)
def test_statements_that_write_attach_or_configure_are_refused(data_dir, statement, croco):
    completed = croco("sql", statement, "--storage", str(data_dir))
    assert completed.returncode == 2
    assert "read-only" in completed.stderr
    assert catalog.query(str(data_dir), "SELECT count(*) AS n FROM preference_pairs")["n"][0] == 5


def test_formats_and_out_file(data_dir, tmp_path, croco):
    query = "SELECT language, chosen_score FROM preference_pairs ORDER BY chosen_score DESC LIMIT 2"
    as_json = croco("sql", query, "--storage", str(data_dir), "--format", "json")
    assert json.loads(as_json.stdout) == [
        {"language": "da", "chosen_score": 1.0},
        {"language": "da", "chosen_score": 0.5},
    ]
    as_csv = croco("sql", query, "--storage", str(data_dir), "--format", "csv")
    assert as_csv.stdout.splitlines() == ["language,chosen_score", "da,1.0", "da,0.5"]
    table = croco("sql", query, "--storage", str(data_dir))
    assert "chosen_score" in table.stdout and "da" in table.stdout
    out = tmp_path / "top.parquet"
    written = croco("sql", query, "--storage", str(data_dir), "--format", "parquet", "--out", str(out))
    assert written.returncode == 0
    assert pl.read_parquet(out)["chosen_score"].to_list() == [1.0, 0.5]


def test_unknown_table_and_missing_storage_give_clear_errors(data_dir, tmp_path, croco):
    completed = croco("sql", "SELECT * FROM nope", "--storage", str(data_dir))
    assert completed.returncode == 2
    assert "nope" in completed.stderr and "Tables available: preference_pairs" in completed.stderr
    missing = croco("sql", "SELECT 1", "--storage", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no pipeline data" in missing.stderr
