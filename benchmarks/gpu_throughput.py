"""GPU throughput of CroCo's two heavy steps on a ~0.4B Llama built from its config: DPO training with
LoRA (steps/s, tokens/s, model FLOPs utilisation) and reward-model scoring (tokens/s, MFU).

Nothing is downloaded: the models are built from a ``LlamaConfig`` with random weights (default:
hidden 1024, 24 layers, 16 heads, intermediate 2816, vocabulary 32,000: 0.37 B parameters), the
tokenizer is a word-level one made here (``w5 w17 ...`` -> token ids 5, 17, ...), and the data are
random token ids written as such words, so every sequence has exactly the requested length and no
padding.

  DPO        TRL's ``DPOTrainer`` exactly as the pipeline uses it: LoRA r 16 / alpha 32 on every
             attention and MLP projection, ``ref_model=None`` (the reference is the base with the
             adapter switched off), gradient checkpointing on (the paper's setting; ``--no-gradient-
             checkpointing`` turns it off), bf16 on a GPU, fp32 on CPU. ``--warmup-steps`` steps are
             run and not timed, then ``--steps`` are timed (a callback synchronises the GPU at each
             step end).
  RM direct  ``LlamaForSequenceClassification`` (one logit) forward passes on random ids,
             ``torch.inference_mode``, bf16 on a GPU.
  RM scorer  the same model saved to a temporary folder and run through the pipeline's
             ``SequenceClassifierScorer`` (chat template, tokenisation, length-sorted batches):
             what the ``reward_scores`` asset does.

Model FLOPs and MFU. N is the number of weights in the model's matrix multiplications (every
``nn.Linear``, the LM head included, the input embedding excluded: a lookup). S is the sequence
length, L the layers, d the hidden size. Per token:

  DPO step   6·N + 16·L·d·S. The dense part is the usual 6·N estimate, and for LoRA-DPO it is also
             what the step does: policy forward 2·N, backward 2·N (the frozen base weights get no
             weight gradients, only the activations do; the adapters' own FLOPs are < 1 % and left
             out) and the reference forward 2·N (adapter off). Attention scores and values cost
             4·L·d·S per token forward, counted over the full S×S matrix as in PaLM's MFU (not halved
             for the causal mask): forward + backward (2×) + reference forward = 16·L·d·S. With
             ``--precompute-ref`` the reference forward happens once before training and the step
             costs 4·N + 12·L·d·S.
  scoring    2·N + 4·L·d·S (one forward).

Recomputation by gradient checkpointing (one more forward) is not counted: this is MFU, not hardware
FLOPs utilisation. MFU = achieved model FLOPs/s / peak. The peak is dense bf16 tensor-core
throughput, from ``--peak-tflops`` or else looked up by device name (H100 SXM and H200: 989 TFLOPS,
H100 NVL 835, H100 PCIe 756, A100 312, L40S 362, L4 121); without either (e.g. on CPU), MFU is not
reported.

    python benchmarks/gpu_throughput.py                      # the ~0.4B models, on the GPU if there is one
    python benchmarks/gpu_throughput.py --toy                # everything tiny: a CPU smoke run
    python benchmarks/gpu_throughput.py --out figures.json   # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

# pattern in torch.cuda.get_device_name() -> dense bf16 peak TFLOPS; first match wins
PEAK_BF16_TFLOPS = (
    (r"H200", 989.0),  # also GH200
    (r"H100 NVL", 835.0),
    (r"H100 PCIe", 756.0),
    (r"H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"H800", 989.0),
    (r"A100", 312.0),
    (r"A800", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
)

# Presets: the ~0.4B GPU run and the toy CPU run. Any option given on the command line wins.
PRESETS = {
    "gpu": dict(
        hidden=1024,
        layers=24,
        heads=16,
        intermediate=2816,
        vocab=32000,
        batch_size=8,
        grad_accum=1,
        prompt_len=256,
        completion_len=768,
        steps=30,
        warmup_steps=5,
        rm_batch_size=16,
        rm_seq_len=1024,
        rm_batches=20,
        rm_warmup=3,
    ),
    "toy": dict(
        hidden=64,
        layers=2,
        heads=2,
        intermediate=128,
        vocab=512,
        batch_size=2,
        grad_accum=1,
        prompt_len=12,
        completion_len=12,
        steps=2,
        warmup_steps=1,
        rm_batch_size=2,
        rm_seq_len=24,
        rm_batches=2,
        rm_warmup=1,
    ),
}

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
FIRST_WORD = len(SPECIALS)  # token ids below this are special; random data never uses them
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ---------------------------------------------------------------------------------------------------
# Models, tokenizer, data


def build_tokenizer(vocab: int):
    """A word-level tokenizer: "w<i>" is token i (i >= FIRST_WORD), plus the special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    table = {token: i for i, token in enumerate(SPECIALS)}
    table.update({f"w{i}": i for i in range(FIRST_WORD, vocab)})
    core = Tokenizer(models.WordLevel(table, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    return tokenizer


def llama_config(args, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=max(4096, args.prompt_len + args.completion_len + 8, args.rm_seq_len + 8),
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=False,
        **extra,
    )


def build_model(model_class, config, device: str, dtype, seed: int):
    """Random weights, created on ``device`` in ``dtype`` (no fp32 copy on the CPU first)."""
    import torch

    torch.manual_seed(seed)
    with torch.device(device):
        return model_class._from_config(config, dtype=dtype)


def matmul_weights(model) -> int:
    """N: weights of every nn.Linear (LM head / score head included, input embedding excluded)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def fmt_count(n: float) -> str:
    return f"{n / 1e9:.3f} B" if n >= 1e8 else f"{n / 1e6:.3f} M"


def words(rng, count: int, vocab: int) -> str:
    return " ".join(f"w{i}" for i in rng.integers(FIRST_WORD, vocab, count))


# ---------------------------------------------------------------------------------------------------
# DPO


def run_dpo(args, device: str, on_cuda: bool, workdir: Path) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import LlamaForCausalLM, PrinterCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from croco_pipeline.core.training.config import DPOSettings

    tokenizer = build_tokenizer(args.vocab)
    config = llama_config(args)
    dtype = torch.bfloat16 if on_cuda else torch.float32
    model = build_model(LlamaForCausalLM, config, device, dtype, args.seed)
    n_matmul = matmul_weights(model)
    n_total = sum(p.numel() for p in model.parameters())
    attention = getattr(model.config, "_attn_implementation", None)

    total_steps = args.warmup_steps + args.steps
    pairs = args.batch_size * args.grad_accum * total_steps
    rng = np.random.default_rng(args.seed)
    dataset = Dataset.from_list(
        [
            {
                "prompt": words(rng, args.prompt_len, args.vocab),
                "chosen": " " + words(rng, args.completion_len, args.vocab),
                "rejected": " " + words(rng, args.completion_len, args.vocab),
            }
            for _ in range(pairs)
        ]
    )
    seq_len = args.prompt_len + args.completion_len + 1  # TRL appends EOS to each answer
    paper = DPOSettings()  # the paper's hyperparameters (they do not change the speed, the shapes do)
    lora = paper.lora
    top = getattr(lora, "top_layers", None)  # None: every layer (the paper)
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
        layers_to_transform=list(range(max(0, args.layers - top), args.layers)) if top else None,
    )
    dpo_config = DPOConfig(
        output_dir=str(workdir / "dpo"),
        beta=paper.beta,
        loss_type=[paper.loss_type],
        learning_rate=paper.learning_rate,
        lr_scheduler_type=paper.lr_scheduler_type,
        warmup_steps=paper.warmup_ratio,
        weight_decay=paper.weight_decay,
        max_length=seq_len,
        max_steps=total_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        bf16=on_cuda,
        use_cpu=not on_cuda,
        gradient_checkpointing=args.gradient_checkpointing,
        precompute_ref_log_probs=args.precompute_ref,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
        data_seed=args.seed,
    )

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []
            self.start = None

        def on_train_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            if on_cuda:
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    clock = StepClock()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=dpo_config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(clock)
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    if len(clock.ends) != total_steps:
        raise SystemExit(f"DPO ran {len(clock.ends)} steps, expected {total_steps}")
    t0 = clock.ends[args.warmup_steps - 1] if args.warmup_steps else clock.start
    timed = clock.ends[-1] - t0

    tokens_per_step = args.batch_size * args.grad_accum * 2 * seq_len  # chosen + rejected, no padding
    counted = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]
    trl_tokens = int(counted[-1]) if counted else None
    if trl_tokens is not None and trl_tokens != tokens_per_step * total_steps:
        print(
            f"note: TRL counted {trl_tokens} tokens over {total_steps} steps, expected "
            f"{tokens_per_step * total_steps} (padding?)",
            file=sys.stderr,
        )
    dense, attn = (4, 12) if args.precompute_ref else (6, 16)
    flops_per_token = dense * n_matmul + attn * args.layers * args.hidden * seq_len
    steps_per_s = args.steps / timed
    result = {
        "phase": "dpo_train",
        "attention": attention,
        "params_total": n_total,
        "params_matmul": n_matmul,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "seq_len": seq_len,
        "gradient_checkpointing": args.gradient_checkpointing,
        "precompute_ref": args.precompute_ref,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "timed_seconds": timed,
        "wall_seconds": wall,
        "steps_per_s": steps_per_s,
        "tokens_per_step": tokens_per_step,
        "trl_num_tokens": trl_tokens,
        "tokens_per_s": steps_per_s * tokens_per_step,
        "flops_per_token": flops_per_token,
        "flops_formula": f"{dense}*N + {attn}*L*d*S",
        "achieved_tflops": steps_per_s * tokens_per_step * flops_per_token / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None,
    }
    del trainer, model
    _free(on_cuda)
    return result


# ---------------------------------------------------------------------------------------------------
# Reward model


def run_reward_model(args, device: str, on_cuda: bool, workdir: Path) -> list[dict]:
    import numpy as np
    import torch
    from transformers import LlamaForSequenceClassification

    from croco_pipeline.core.models.reward_scorers import open_reward_scorer

    dtype = torch.bfloat16 if on_cuda else torch.float32
    config = llama_config(args, num_labels=1)
    model = build_model(LlamaForSequenceClassification, config, device, dtype, args.seed).eval()
    n_matmul = matmul_weights(model)
    n_total = sum(p.numel() for p in model.parameters())

    def figures(phase: str, seconds: float, conversations: int, tokens: int, seq_len: float, **extra) -> dict:
        flops_per_token = 2 * n_matmul + 4 * args.layers * args.hidden * seq_len
        return {
            "phase": phase,
            "params_total": n_total,
            "params_matmul": n_matmul,
            "batch_size": args.rm_batch_size,
            "seq_len": seq_len,
            "conversations": conversations,
            "tokens": tokens,
            "timed_seconds": seconds,
            "conversations_per_s": conversations / seconds,
            "tokens_per_s": tokens / seconds,
            "flops_per_token": flops_per_token,
            "flops_formula": "2*N + 4*L*d*S",
            "achieved_tflops": tokens / seconds * flops_per_token / 1e12,
            **extra,
        }

    # direct: forward passes on random ids
    generator = torch.Generator().manual_seed(args.seed)
    batches = [
        torch.randint(FIRST_WORD, args.vocab, (args.rm_batch_size, args.rm_seq_len), generator=generator)
        for _ in range(args.rm_warmup + args.rm_batches)
    ]
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for i, batch in enumerate(batches):
            if i == args.rm_warmup:
                if on_cuda:
                    torch.cuda.synchronize()
                started = time.perf_counter()
            model(input_ids=batch.to(device)).logits.float().cpu()  # .cpu(): as the scorer, waits for the result
        seconds = time.perf_counter() - started
    count = args.rm_batch_size * args.rm_batches
    direct = figures(
        "rm_forward",
        seconds,
        count,
        count * args.rm_seq_len,
        args.rm_seq_len,
        peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None,
    )

    # through the pipeline's scorer: save, reopen, score texts
    folder = workdir / "reward-model"
    model.save_pretrained(folder)
    build_tokenizer(args.vocab).save_pretrained(folder)
    del model
    _free(on_cuda)
    rng = np.random.default_rng(args.seed + 1)
    prompt_words = args.rm_seq_len // 4
    response_words = args.rm_seq_len - prompt_words - 2  # + <|user|> and <|assistant|>
    count = args.rm_batch_size * args.rm_batches
    texts = [
        (words(rng, prompt_words, args.vocab), words(rng, response_words, args.vocab))
        for _ in range(args.rm_batch_size * args.rm_warmup + count)
    ]
    warm, timed = texts[: args.rm_batch_size * args.rm_warmup], texts[args.rm_batch_size * args.rm_warmup :]
    scorer = open_reward_scorer(
        "sequence_classifier", str(folder), max_length=args.rm_seq_len, batch_size=args.rm_batch_size, device=device
    )
    try:
        tokens = sum(len(scorer.encode(p, r)) for p, r in timed)
        if warm:
            scorer.score([p for p, _ in warm], [r for _, r in warm], ["en"] * len(warm))
        if on_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        batch = scorer.score([p for p, _ in timed], [r for _, r in timed], ["en"] * len(timed))
        seconds = time.perf_counter() - started
    finally:
        scorer.close()
    if any(batch.truncated) or any(batch.skipped):
        raise SystemExit("the scorer truncated or skipped conversations; the lengths are off")
    scored = figures("rm_scorer", seconds, count, tokens, tokens / count)
    _free(on_cuda)
    return [direct, scored]


def _free(on_cuda: bool) -> None:
    import gc

    gc.collect()
    if on_cuda:
        import torch

        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------


def peak_tflops(device_name: str, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, "--peak-tflops"
    for pattern, tflops in PEAK_BF16_TFLOPS:
        match = re.search(pattern, device_name, re.IGNORECASE)
        if match:
            return tflops, f"dense bf16 peak of {match.group(0)}"
    return None, "unknown device: give --peak-tflops for MFU"


def print_table(rows: list[dict], peak: float | None) -> None:
    header = f"{'phase':11s} {'seq':>6s} {'rate':>18s} {'tokens/s':>12s} {'TFLOPS':>9s} {'MFU':>7s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        if row["phase"] == "dpo_train":
            rate = f"{row['steps_per_s']:.3f} steps/s"
        else:
            rate = f"{row['conversations_per_s']:.1f} conv/s"
        mfu = f"{row['mfu'] * 100:.1f} %" if row.get("mfu") is not None else "n/a"
        print(
            f"{row['phase']:11s} {row['seq_len']:6.0f} {rate:>18s} {row['tokens_per_s']:12,.0f} "
            f"{row['achieved_tflops']:9.3g} {mfu:>7s}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toy", action="store_true", help="tiny models and data (a CPU smoke run)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cuda, cuda:1, cpu")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOPS of the device (default: by name)")
    model = parser.add_argument_group("model (default 0.37B: hidden 1024, 24 layers, 16 heads, 2816, vocab 32000)")
    for name in ("hidden", "layers", "heads", "intermediate", "vocab"):
        model.add_argument(f"--{name}", type=int)
    dpo = parser.add_argument_group("DPO (default: batch 8, prompt 256 + answer 768 tokens, 5 + 30 steps)")
    for name in ("batch-size", "grad-accum", "prompt-len", "completion-len", "steps", "warmup-steps"):
        dpo.add_argument(f"--{name}", type=int)
    dpo.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="recompute activations in the backward pass (default on, as in the paper's runs)",
    )
    dpo.add_argument(
        "--precompute-ref",
        action="store_true",
        help="reference log-probs computed once before training (the embedded laptop setting)",
    )
    rm = parser.add_argument_group("reward model (default: batches of 16 x 1024 tokens, 3 + 20 batches)")
    for name in ("rm-batch-size", "rm-seq-len", "rm-batches", "rm-warmup"):
        rm.add_argument(f"--{name}", type=int)
    parser.add_argument("--skip-dpo", action="store_true", help="only the reward model")
    parser.add_argument("--skip-rm", action="store_true", help="only DPO")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="folder for temporary files (default: system temp)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    for key, value in PRESETS["toy" if args.toy else "gpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.hidden % args.heads:
        parser.error("--hidden must be a multiple of --heads")
    if min(args.steps, args.rm_batches, args.batch_size, args.rm_batch_size) < 1 or args.rm_seq_len < 8:
        parser.error("--steps, --rm-batches and batch sizes must be >= 1, --rm-seq-len >= 8")

    import datasets
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    on_cuda = device.startswith("cuda")
    if on_cuda and device != "cuda":
        torch.cuda.set_device(torch.device(device))
        device = "cuda"  # the trainer places the model on the current device
    if on_cuda:
        name = torch.cuda.get_device_name()
        peak, peak_source = peak_tflops(name, args.peak_tflops)
    else:
        name = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
        peak, peak_source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else (None, "no peak for CPU")
    print(
        f"device: {name}, {'bf16' if on_cuda else 'fp32'}; peak {f'{peak:.0f} TFLOPS' if peak else 'n/a'} "
        f"({peak_source}); torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {__import__('trl').__version__}",
        flush=True,
    )
    print(
        f"model: Llama, hidden {args.hidden}, {args.layers} layers, {args.heads} heads, intermediate "
        f"{args.intermediate}, vocab {args.vocab}, random weights",
        flush=True,
    )

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="croco-gpu-throughput-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        if not args.skip_dpo:
            row = run_dpo(args, device, on_cuda, workdir)
            print(
                f"DPO: {fmt_count(row['params_total'])} parameters ({fmt_count(row['params_matmul'])} in "
                f"matmuls, {fmt_count(row['trainable_params'])} LoRA), batch {row['batch_size']} x "
                f"{row['grad_accum']} pairs of {row['seq_len']} tokens, {row['attention']} attention, gradient "
                f"checkpointing {'on' if row['gradient_checkpointing'] else 'off'}, {row['timed_steps']} steps "
                f"timed in {row['timed_seconds']:.2f} s after {row['warmup_steps']} warm-up"
                + (f", peak memory {row['peak_memory_gib']:.1f} GiB" if row["peak_memory_gib"] is not None else ""),
                flush=True,
            )
            rows.append(row)
        if not args.skip_rm:
            rm_rows = run_reward_model(args, device, on_cuda, workdir)
            print(
                f"reward model: {fmt_count(rm_rows[0]['params_total'])} parameters, batches of "
                f"{args.rm_batch_size} x {args.rm_seq_len} tokens, {args.rm_batches} timed after "
                f"{args.rm_warmup} warm-up",
                flush=True,
            )
            rows.extend(rm_rows)
    for row in rows:
        row["mfu"] = row["achieved_tflops"] / peak if peak else None
    print()
    print_table(rows, peak)
    print("(MFU: model FLOPs per token 6N + 16LdS for a DPO step, 2N + 4LdS for scoring; see --help)")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "device": name,
                    "dtype": "bfloat16" if on_cuda else "float32",
                    "peak_tflops": peak,
                    "peak_source": peak_source,
                    "toy": args.toy,
                    "model": {k: getattr(args, k) for k in ("hidden", "layers", "heads", "intermediate", "vocab")},
                    "versions": {
                        "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "trl": __import__("trl").__version__,
                    },
                    "results": rows,
                },
                indent=2,
            )
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
