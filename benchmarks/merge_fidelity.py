"""How much of a LoRA adapter survives being served in bfloat16: in the weights and in what the model says.

Weights (``core.models.adapters.adapter_fidelity``): the share of the adapter's change s·B·A that the
merged weights keep in each dtype (⟨D, Δ⟩ / ⟨Δ, Δ⟩, D = dtype(W + Δ) − dtype(W)), the lowest per matrix,
and the share of adapted weights that differ from the base's in that dtype.

Behaviour: the log-likelihood of every answer token of some training rows (the adapter's own data) under
the base and under the tuned model, unmerged in float32 (the reference: the adapter's effect is their
difference), and served three ways: merged into bfloat16 weights (what a bfloat16 engine holds after a
plain merge), as LoRA over the bfloat16 base (the adapter's output added to each bfloat16 layer output,
as vLLM's LoRA does), and merged in float32. For each: the share of the reference effect it shows (the
least-squares slope of its effect, against its own base in the same dtype, on the reference effect) and
the correlation of the two.

    python benchmarks/merge_fidelity.py --adapter croco_data/checkpoints/sft_checkpoint/language=cy \\
        --rows 'croco_data/sft_records/language=cy/*.parquet'

``--rows``: Parquet with ``prompt`` and ``response`` (SFT records) or ``chosen`` (preference pairs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_common import print_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="a LoRA adapter folder (a checkpoint)")
    parser.add_argument("--rows", required=True, help="Parquet file(s) with prompt and response (or chosen)")
    parser.add_argument("--limit", type=int, default=16, help="rows to score")
    parser.add_argument("--max-length", type=int, default=384, help="tokens per row (prompt + answer)")
    args = parser.parse_args()

    import polars as pl
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from croco_pipeline.core.models.adapters import adapter_fidelity
    from croco_pipeline.core.models.hardware import read_cpu_features

    print_load("start")
    started = time.perf_counter()
    torch.set_num_threads(len(read_cpu_features().cores))
    base_path = json.loads((Path(args.adapter) / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(base_path)

    def base(dtype):
        return AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).eval()

    reference = PeftModel.from_pretrained(base(torch.float32), args.adapter).eval()
    weights = [adapter_fidelity(reference, dtype).as_dict() for dtype in ("bfloat16", "float16", "float32")]

    rows = pl.read_parquet(args.rows).head(args.limit)
    answers = rows["response"] if "response" in rows.columns else rows["chosen"]
    encoded = []
    for prompt, answer in zip(rows["prompt"], answers):
        user = [{"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": answer}], tokenize=False)
        ids = tokenizer(whole, add_special_tokens=False)["input_ids"][: args.max_length]
        encoded.append((ids, len(tokenizer(head, add_special_tokens=False)["input_ids"])))

    def answer_logliks(model) -> torch.Tensor:
        """Log-likelihood of every answer token of every row, in one vector."""
        values = []
        with torch.no_grad():
            for ids, answer_start in encoded:
                x = torch.tensor([ids])
                logits = model(x).logits.float()
                token_ll = torch.log_softmax(logits[0, :-1], -1).gather(1, x[0, 1:, None])[:, 0]
                values.append(token_ll[answer_start - 1 :])
        return torch.cat(values)

    tuned32 = answer_logliks(reference)
    with reference.disable_adapter():
        base32 = answer_logliks(reference)
    base16 = answer_logliks(base(torch.bfloat16))
    served = {
        "merged, bfloat16 weights": (
            PeftModel.from_pretrained(base(torch.float32), args.adapter).merge_and_unload().to(torch.bfloat16),
            base16,
        ),
        "LoRA over the bfloat16 base": (PeftModel.from_pretrained(base(torch.bfloat16), args.adapter).eval(), base16),
        "merged, float32": (PeftModel.from_pretrained(base(torch.float32), args.adapter).merge_and_unload(), base32),
    }
    effect = tuned32 - base32
    behaviour = []
    for name, (model, own_base) in served.items():
        shown = answer_logliks(model.eval()) - own_base
        behaviour.append(
            {
                "served": name,
                "effect_shown": round(float((shown * effect).sum() / (effect * effect).sum()), 3),
                "correlation": round(float(torch.corrcoef(torch.stack([shown, effect]))[0, 1]), 3),
            }
        )
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(f"adapter {args.adapter}")
        print(pl.DataFrame(weights).with_columns(pl.col(pl.Float64).round(4)))
        print(
            f"{effect.numel()} answer tokens of {len(encoded)} rows; the adapter's effect on their log-likelihood "
            f"(float32): mean {float(effect.mean()):+.4f}, rms {float(effect.pow(2).mean().sqrt()):.4f} nats"
        )
        print(pl.DataFrame(behaviour))
    print_load(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
