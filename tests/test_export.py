"""`croco export`: pairs leave the pipeline in a form TRL's DPOTrainer trains on unchanged."""

import polars as pl
from datasets import load_dataset, load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from croco_pipeline.core.io import atomic


def _pairs(base, language, n):
    frame = pl.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"Question number {i}?" for i in range(n)],
            "prompt_language": [language] * n,
            "chosen": [f"A careful answer {i}." for i in range(n)],
            "rejected": [f"no {i}" for i in range(n)],
            "chosen_score": [1.0] * n,
            "rejected_score": [0.0] * n,
            "language": [language] * n,
        }
    )
    atomic.write_parquet(frame, str(base / "preference_pairs" / f"language={language}" / "data.parquet"))


def test_export_trains_with_dpo_trainer_unchanged(tmp_path, tiny_policy_path, croco):
    base = tmp_path / "croco_data"
    _pairs(base, "da", 4)
    _pairs(base, "ga", 3)
    out = tmp_path / "da.jsonl"
    completed = croco("export", "preference_pairs", str(out), "--storage", str(base), "--where", "language = 'da'")
    assert completed.returncode == 0, completed.stderr
    assert "4 pairs written" in completed.stdout
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert dataset[0]["prompt"] == [{"role": "user", "content": "Question number 0?"}]
    assert dataset[0]["chosen"] == [{"role": "assistant", "content": "A careful answer 0."}]

    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    config = DPOConfig(
        output_dir=str(tmp_path / "trainer"),
        max_steps=1,
        per_device_train_batch_size=2,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to=[],
        logging_steps=1,
        max_length=64,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_policy_path),
    )
    trainer.train()
    assert any("loss" in entry for entry in trainer.state.log_history)

    folder = tmp_path / "all"
    assert croco("export", "preference_pairs", str(folder), "--storage", str(base), "--format", "hf").returncode == 0
    assert sorted(load_from_disk(str(folder))["prompt_language"]) == ["da"] * 4 + ["ga"] * 3


def test_export_errors_are_one_line(tmp_path, croco):
    base = tmp_path / "croco_data"
    _pairs(base, "da", 2)
    empty = croco(
        "export", "preference_pairs", str(tmp_path / "x.jsonl"), "--storage", str(base), "--where", "language = 'fr'"
    )
    assert empty.returncode == 2 and "no pairs in preference_pairs where language = 'fr'" in empty.stderr
    wrong = croco("export", "preference_pairs", str(tmp_path / "x.txt"), "--storage", str(base))
    assert wrong.returncode == 2 and "needs a .jsonl file name" in wrong.stderr
    assert not (tmp_path / "x.txt").exists()
