"""Which causal LMs of the installed transformers train, save and evaluate with our trainer (a dev check).

    python benchmarks/architecture_sweep.py                 # the code-model families below
    python benchmarks/architecture_sweep.py --all           # every causal-LM type (about 200; ~30 min)
    python benchmarks/architecture_sweep.py granite gpt_oss # these types

Each type gets a tiny random model (2 layers, hidden 64) from its default config, the tiny
tokenizer, one training step on six pairs and an evaluation of the saved checkpoint, in a
subprocess of its own (``--timeout`` seconds). One line per type: the attention the model trained
with, packed or padded batches, and why not packed; or the stage that failed and the error. Rerun
it after a transformers upgrade.

Run 2026-11-26 on the 2-core dev machine, transformers 5.24: all 36 families below pass (4 min
17 s; Qwen3.5/Next, Gemma 2, gpt-oss, Falcon-H1, BLOOM, Mamba and Jamba on padded batches, each
with its reason). Of all 196 types (an earlier run of the same steps), the failures were the
decoder halves of encoder-decoder models (BART family: no ``get_input_embeddings``), multimodal
wrappers whose base model is not a text decoder (Llama 4, mllama), and types whose default config
the tiny sizes contradict.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("llama", "qwen2", "qwen3", "qwen3_moe", "qwen3_5_text", "qwen3_next", "mistral", "mixtral", "gemma",
            "gemma2", "gemma3_text", "gemma4_text", "starcoder2", "gpt_bigcode", "gpt2", "gpt_neox", "phi", "phi3",
            "granite", "cohere", "deepseek_v3", "exaone", "ernie4_5", "glm4_moe", "mellum", "iquestcoder",
            "olmo2", "seed_oss", "smollm3", "gpt_oss", "falcon", "falcon_h1", "bloom", "stablelm", "mamba", "jamba")
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512)


def one(model_type: str) -> dict:
    """Train, save and evaluate a tiny ``model_type`` (runs in the subprocess)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from codeprefs.trainers.evaluate import evaluate
    from codeprefs.trainers.tiny import tiny_tokenizer
    from codeprefs.trainers.train import TrainConfig, run

    from tests.trainer_fixtures import make_rows, write_shards

    stage = "build"
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            tokenizer = tiny_tokenizer()
            config = AutoConfig.for_model(model_type, **TINY, vocab_size=len(tokenizer),
                                          pad_token_id=tokenizer.pad_token_id)
            torch.manual_seed(0)
            AutoModelForCausalLM.from_config(config).save_pretrained(root / "model")
            tokenizer.save_pretrained(root / "model")
            data = write_shards(root / "pairs", make_rows(6, seed=2))
            stage = "train"
            summary = run(TrainConfig(data=[str(data)], model=str(root / "model"), output=str(root / "rm"),
                                      global_batch=6, micro_batch_tokens=400, lr=1e-3, max_steps=1))
            stage = "evaluate"
            evaluate(root / "rm", str(data), root / "eval")
        return {"type": model_type, "ok": True, "attention": summary["attention"], "batches": summary["batches"],
                "why": summary["packing_problem"]}
    except Exception as error:  # the report names the stage and the error, for every type
        return {"type": model_type, "ok": False, "stage": stage, "error": f"{type(error).__name__}: {error}"[:300]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("types", nargs="*", help="model types (default: the code-model families)")
    parser.add_argument("--all", action="store_true", help="every causal-LM type transformers has")
    parser.add_argument("--timeout", type=int, default=120, help="seconds one type may take")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # (internal) the subprocess for one type
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    if args.all:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        types = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    else:
        types = args.types or list(FAMILIES)
    passed = 0
    for model_type in types:
        try:
            done = subprocess.run([sys.executable, __file__, "--one", model_type], cwd=ROOT, capture_output=True,
                                  text=True, timeout=args.timeout, env={"PYTHONPATH": str(ROOT), **_env()})
            lines = [line for line in done.stdout.splitlines() if line.startswith('{"type"')]
            result = json.loads(lines[-1]) if lines else {"type": model_type, "ok": False, "stage": "process",
                                                          "error": done.stderr.strip()[-300:]}
        except subprocess.TimeoutExpired:
            result = {"type": model_type, "ok": False, "stage": "timeout", "error": f"over {args.timeout} s"}
        passed += result["ok"]
        if result["ok"]:
            why = f"  ({result['why']})" if result["why"] else ""
            print(f"{model_type:26} ok    {result['attention']:20} {result['batches']}{why}", flush=True)
        else:
            print(f"{model_type:26} FAIL  at {result['stage']}: {result['error']}", flush=True)
    print(f"{passed} of {len(types)} types train, save and evaluate")
    return 0 if passed == len(types) else 1


def _env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


if __name__ == "__main__":
    sys.exit(main())
