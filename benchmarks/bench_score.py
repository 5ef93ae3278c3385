"""Scoring throughput: ``RewardScorer`` against a plain transformers loop, same model, same rows.

    .venv/bin/python benchmarks/bench_score.py                  # CPU: 4-layer model, 64 rows
    python3 benchmarks/bench_score.py --device cuda             # GPU: Qwen3-0.6B's shape, 2,048 rows
    python3 benchmarks/bench_score.py --device cuda --size small --rows 4096   # any mix of the two

Both sides score the same rows with one reward model: a random-weight Qwen3 built from a config
(``--size small``: 4 layers, hidden 256; ``0.6b``: Qwen3-0.6B's shape) with a random score head
and a local byte-level BPE tokenizer of 4,096 tokens trained on the spot on the same code files
(:func:`codeprefs.trainers.tiny.tiny_tokenizer`; about 3 characters a token, like a real
model's tokenizer on code), saved as the trainer saves a reward model. Nothing is downloaded.
The dtype is the scorer's default on the device (float32 on a CPU, bfloat16 on a GPU), the same
on both sides.

The rows are real code with a long-tailed length mix: each response is cut from the
concatenated files of the quickstart histories (``quickstart/histories/*/files``; 124 files in
eight languages) at a length drawn log-normally (median 1,500 characters, sigma 0.9, 80 to
12,000 characters), each prompt asks for its file, and every row is conditioned on one
criterion's system prompt. Then, each side timed from text to scores (templating and tokenizing
included) after one untimed warm-up batch:

* **plain**: ``AutoModelForSequenceClassification.from_pretrained`` on the checkpoint (SDPA
  attention), the rows in input order in padded batches of ``--plain-batch`` rows; each text is
  the tokenizer's chat template applied to (system, prompt, response), tokenized without
  truncation; the score is the logit at the last non-pad token (transformers' own pooling, the
  token our model reads too);
* **scorer**: :meth:`codeprefs.trainers.score.RewardScorer.score` with ``--max-tokens-per-batch``
  (longest rows first, padding-free packs, per-sequence SDPA on a CPU, varlen flash attention on
  a GPU);
* **scorer, packs off**: the same with padded batches (what a model that cannot take packs gets):
  how much of the gain is the sorting by length alone.

The sides take turns ``--repeats`` times (the best time of each is kept). It checks that both
read the same token ids for every row and prints rows/s of each, the ratios, the plain loop's
non-pad share of its token slots and the largest score difference; it exits 1 if they disagree.

Measured 2026-12-05 on the development machine (2 cores, 24 GiB, no GPU; torch 2.13.0+cpu,
transformers 5.24.0), shared with other jobs (the load average of each run below), so absolute
rates vary from run to run; the ratios come from runs of the sides in turn. Model ``small``
(4.2M parameters, float32), 16,384-token batches, plain batches of 8 rows (non-pad 48% of its
slots; 46% at 128 rows); token ids identical on both sides for every row, scores within 1.2e-6
(largest |score| 1.84)::

    run                                load  rows  tokens  plain rows/s  scorer rows/s  ratio  packs off
    defaults (1 thread, --repeats 1)   7-8     64  43,498           2.3            8.0  3.41x      1.47x
    --repeats 2                        7       64  43,498           2.5           10.9  4.38x      1.92x
    --repeats 2                        3-4     64  43,498           3.8           10.8  2.85x      1.99x
    --repeats 2 --threads 2            4-5     64  43,498           6.3           22.2  3.51x      0.81x
    --rows 128 --repeats 2             9-11   128  86,835           1.1            2.9  2.66x      1.86x

(``packs off``: the scorer's padded batches, rows sorted by length, against the plain loop.) On
a CPU the packed scorer is the fastest of the three in every run, 2.7-4.4x the plain loop: it
computes no padding (the plain loop computes twice the slots it needs) and its per-sequence
causal attention avoids the padded batches' masked attention. Sorting by length alone is worth
1.5-2x with one thread but was slower than the plain loop (0.81x) in the one two-thread run,
not investigated further. A default run takes about a minute at load 7. A CPU dry run of the GPU
shape (``--size 0.6b --rows 3 --plain-batch 2``, 444.7M parameters, float32, 5 minutes) also
ran: 2.10x, scores within 1.4e-6.

The GPU figure (the goal: >= 2x the plain loop on a GPU) is not measured yet: no GPU was lent to
this work. On a lent machine: ``python3 benchmarks/bench_score.py --device cuda`` (Qwen3-0.6B's
shape in bfloat16, 2,048 rows, 65,536-token packs, plain batches of 16, the best of 2 runs;
torch, transformers, numpy, pandas and pyarrow are all it needs; a few minutes: give it
``timeout_s`` 300).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HISTORIES = ROOT / "quickstart" / "histories"
CRITERION = "Readability_Maintainability"
SIZES = {
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64),
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="model shape (default: small on a CPU, 0.6b on a GPU)")
    parser.add_argument("--rows", type=int, default=None, help="rows to score (default: 64 on a CPU, 2048 on a GPU)")
    parser.add_argument("--plain-batch", type=int, default=None,
                        help="rows per padded batch of the plain loop (default: 8 on a CPU, 16 on a GPU)")
    parser.add_argument("--max-tokens-per-batch", type=int, default=None,
                        help="the scorer's tokens per forward pass (default: 16384 on a CPU, 65536 on a GPU)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs of each side, the sides taking turns, the best of each kept "
                             "(default: 1 on a CPU, 2 on a GPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: 1 on a CPU, where other jobs share the cores and "
                             "OpenMP's spin-waiting makes more threads erratic; torch's own on a GPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.size = args.size or ("0.6b" if gpu else "small")
    args.rows = args.rows or (2048 if gpu else 64)
    args.plain_batch = args.plain_batch or (16 if gpu else 8)
    args.max_tokens_per_batch = args.max_tokens_per_batch or (65536 if gpu else 16384)
    args.threads = args.threads or (None if gpu else 1)
    args.repeats = args.repeats or (2 if gpu else 1)
    if min(args.rows, args.plain_batch, args.max_tokens_per_batch, args.repeats) < 1:
        parser.error("--rows, --plain-batch, --max-tokens-per-batch and --repeats take numbers >= 1")
    return args


def code_files() -> list[Path]:
    files = sorted(path for path in HISTORIES.glob("*/files/*") if path.is_file())
    if not files:
        raise SystemExit(f"no files under {HISTORIES}")
    return files


def code_rows(count: int, seed: int) -> tuple[list[str], list[str]]:
    """(prompts, responses): responses cut from the quickstart files at log-normal lengths."""
    import numpy as np

    files = code_files()
    corpus = "".join(path.read_text(errors="replace") for path in files)
    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for _ in range(count):
        length = int(np.clip(rng.lognormal(math.log(1500), 0.9), 80, 12000))
        start = corpus.rfind("\n", 0, int(rng.integers(0, len(corpus) - length))) + 1  # whole lines
        end = corpus.find("\n", start + length)
        name = files[int(rng.integers(0, len(files)))].name.split("@")[0]
        prompts.append(f"Write {name} for this project, following its conventions.")
        responses.append(corpus[start: end if end >= 0 else len(corpus)].strip() or "pass")
    return prompts, responses


def build_checkpoint(folder: Path, size: str, seed: int) -> Path:
    """A random Qwen3 reward model (random score head) and the tiny tokenizer, saved like the trainer's."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from codeprefs.trainers.model import RewardModel
    from codeprefs.trainers.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer(4096, [path.read_text(errors="replace") for path in code_files()])
    pad = tokenizer.pad_token_id
    config = Qwen3Config(**SIZES[size], vocab_size=len(tokenizer), max_position_embeddings=16384, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=True,
                         pad_token_id=pad, eos_token_id=pad, bos_token_id=None, attention_dropout=0.0)
    torch.manual_seed(seed)
    model = RewardModel.from_causal_lm(Qwen3ForCausalLM(config), pad_token_id=tokenizer.pad_token_id)
    torch.nn.init.normal_(model.score.weight, std=0.05)
    model.save_pretrained(folder, tokenizer=tokenizer)
    return folder


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class PlainLoop:
    """A user's loop: chat-templated text, padded batches of fixed size in input order."""

    def __init__(self, checkpoint: Path, device: str, dtype) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        from codeprefs.trainers.tokenizer import load_tokenizer

        self.tokenizer = load_tokenizer(checkpoint)
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(
            checkpoint, dtype=dtype, attn_implementation="sdpa").to(device).eval()
        self.device = device
        self.torch = torch
        self.slots = self.tokens = 0

    def texts(self, system: str, prompts: list[str], responses: list[str]) -> list[str]:
        return [self.tokenizer.apply_chat_template([{"role": "system", "content": system},
                                                    {"role": "user", "content": prompt},
                                                    {"role": "assistant", "content": response}], tokenize=False)
                for prompt, response in zip(prompts, responses, strict=True)]

    def score(self, system: str, prompts: list[str], responses: list[str], batch_size: int):
        import numpy as np

        scores = []
        self.slots = self.tokens = 0
        with self.torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                texts = self.texts(system, prompts[start: start + batch_size], responses[start: start + batch_size])
                batch = self.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
                self.slots += batch["attention_mask"].numel()
                self.tokens += int(batch["attention_mask"].sum())
                batch = {key: value.to(self.device) for key, value in batch.items()}
                scores.append(self.model(**batch).logits[:, 0].float())
        return self.torch.cat(scores).double().cpu().numpy() if scores else np.zeros(0)

    def token_ids(self, system: str, prompts: list[str], responses: list[str]) -> list[list[int]]:
        return self.tokenizer(self.texts(system, prompts, responses), add_special_tokens=False)["input_ids"]


def timed(runs: list, device: str, repeats: int) -> list[tuple[float, object]]:
    """(best seconds, result of the last run) of each of ``runs``, run in turn ``repeats`` times
    (so a change in the machine's load falls on both sides)."""
    best = [(math.inf, None)] * len(runs)
    for _ in range(repeats):
        for k, run in enumerate(runs):
            synchronize(device)
            started = time.perf_counter()
            result = run()
            synchronize(device)
            best[k] = (min(best[k][0], time.perf_counter() - started), result)
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch
    import transformers

    from codeprefs.core.prompts import evaluation_prompt
    from codeprefs.trainers.evaluate import model_dtype
    from codeprefs.trainers.score import RewardScorer

    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = model_dtype("auto", torch.device(device))
    prompts, responses = code_rows(args.rows, args.seed)
    system = evaluation_prompt("own", CRITERION, None)[1]
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = build_checkpoint(Path(folder), args.size, args.seed)
        scorer = RewardScorer.from_pretrained(checkpoint, device=device, max_length=16384,
                                              micro_batch_tokens=args.max_tokens_per_batch)
        plain = PlainLoop(checkpoint, device, dtype)

    sequences = scorer.encoder.encode_sequences([system] * len(prompts), prompts, responses)
    lengths = np.array([len(sequence) for sequence in sequences])
    print(f"device: {torch.cuda.get_device_name(device) if device.startswith('cuda') else 'cpu'} "
          f"({torch.get_num_threads()} torch threads); torch {torch.__version__}, transformers "
          f"{transformers.__version__}; model {args.size} ({sum(p.numel() for p in scorer.model.parameters()):,} "
          f"parameters, {dtype}), attention {scorer.model.transformer().config._attn_implementation}, "
          f"packs {scorer.model.packs}")
    print(f"rows: {len(prompts)}, {int(lengths.sum()):,} tokens, per row median {int(np.median(lengths))}, "
          f"p90 {int(np.percentile(lengths, 90))}, max {int(lengths.max())}")

    warm = slice(0, min(4, len(prompts)))
    scorer.score(prompts[warm], responses[warm], [system] * len(prompts[warm]))
    plain.score(system, prompts[warm], responses[warm], args.plain_batch)
    def padded() -> np.ndarray:  # the scorer with packs off: padded batches of rows of similar length
        packs, scorer.model.packs = scorer.model.packs, False
        try:
            return scorer.score(prompts, responses, [system] * len(prompts))
        finally:
            scorer.model.packs = packs

    (plain_seconds, plain_scores), (ours_seconds, our_scores), (padded_seconds, padded_scores) = timed(
        [lambda: plain.score(system, prompts, responses, args.plain_batch),
         lambda: scorer.score(prompts, responses, [system] * len(prompts)), padded], device, args.repeats)
    same = np.array([list(ours) == theirs for ours, theirs in
                     zip(sequences, plain.token_ids(system, prompts, responses), strict=True)])
    difference = float(np.max(np.abs(np.stack([our_scores, padded_scores]) - plain_scores)[:, same], initial=0.0))
    scale = float(np.max(np.abs(plain_scores)))
    print(f"plain loop (padded batches of {args.plain_batch}): {plain_seconds:.2f} s, "
          f"{len(prompts) / plain_seconds:,.1f} rows/s, non-pad {100 * plain.tokens / plain.slots:.1f}% of slots")
    print(f"scorer ({args.max_tokens_per_batch:,}-token batches): {ours_seconds:.2f} s, "
          f"{len(prompts) / ours_seconds:,.1f} rows/s")
    print(f"scorer, packs off (padded, longest first): {padded_seconds:.2f} s, "
          f"{len(prompts) / padded_seconds:,.1f} rows/s, {plain_seconds / padded_seconds:.2f}x plain")
    print(f"scorer / plain rows/s: {plain_seconds / ours_seconds:.2f}x (goal on a GPU: >= 2x); "
          f"max |score difference| {difference:.2e} (largest |score| {scale:.3f}) over the {int(same.sum())} "
          f"row(s) both sides tokenize alike, of {len(same)}")
    tolerance = 1e-3 if dtype == torch.float32 else 0.05 * max(scale, 1.0)
    if not same.all() or difference > tolerance:
        print(f"the two sides disagree (tolerance {tolerance:.1e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
