"""Compact reward-model trainer and evaluator (read in this order).

* :mod:`trainers.prompts`: the criteria system prompts and which one a row gets.
* :mod:`trainers.data`: pairs in (shards, Parquet/JSONL, datasets), token ids out; truncation.
* :mod:`trainers.tokenizer`: a model's tokenizer, with its pad token and chat template settled.
* :mod:`trainers.packing`: padding-free packs and padded batches, and the per-step plan.
* :mod:`trainers.attention`: varlen / per-sequence attention for packs.
* :mod:`trainers.loss`: the paper's loss and the chunked LM term.
* :mod:`trainers.model`: backbone + scalar head, saved as ``*ForSequenceClassification``;
  compiled and checkpointed blocks.
* :mod:`trainers.packcheck`: whether a model computes packs exactly (else padded batches).
* :mod:`trainers.compilecheck`: whether torch.compile takes a model's blocks (else eager ones).
* :mod:`trainers.seqcls`: the ``*ForSequenceClassification`` class a reward model is saved as.
* :mod:`trainers.distributed`: FSDP2 under torchrun (or one process).
* :mod:`trainers.checkpoint`: resumable checkpoints.
* :mod:`trainers.config`: a training run's settings, and which of them a resume must keep.
* :mod:`trainers.train`: ``python -m trainers.train`` (the loop is ``fit``).
* :mod:`trainers.raytrain`: the same loop as a Ray Train job (``--ray-workers N``).
* :mod:`trainers.evaluate`: ``python -m trainers.evaluate`` (the paper's result files).
* :mod:`trainers.tiny`: tiny random models and tokenizers for tests and smoke runs.
"""
