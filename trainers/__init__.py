"""Compact reward-model trainer and evaluator (read in this order).

* :mod:`codeprefs.core.prompts`: the criteria system prompts and which one a row gets.
* :mod:`codeprefs.trainers.data`: pairs in (shards, Parquet/JSONL, datasets), token ids out; truncation.
* :mod:`codeprefs.trainers.tokenizer`: a model's tokenizer, with its pad token and chat template settled.
* :mod:`codeprefs.trainers.packing`: padding-free packs and padded batches, and the per-step plan.
* :mod:`codeprefs.trainers.attention`: varlen / per-sequence attention for packs.
* :mod:`codeprefs.trainers.loss`: the paper's loss and the chunked LM term.
* :mod:`codeprefs.trainers.model`: backbone + scalar head, saved as ``*ForSequenceClassification``;
  compiled and checkpointed blocks.
* :mod:`codeprefs.trainers.packcheck`: whether a model computes packs exactly (else padded batches).
* :mod:`codeprefs.trainers.compilecheck`: whether torch.compile takes a model's blocks (else eager ones).
* :mod:`codeprefs.trainers.seqcls`: the ``*ForSequenceClassification`` class a reward model is saved as.
* :mod:`codeprefs.trainers.distributed`: FSDP2 under torchrun (or one process).
* :mod:`codeprefs.trainers.checkpoint`: resumable checkpoints.
* :mod:`codeprefs.trainers.config`: a training run's settings, and which of them a resume must keep.
* :mod:`codeprefs.trainers.train`: ``python -m trainers.train`` (the loop is ``fit``).
* :mod:`codeprefs.trainers.raytrain`: the same loop as a Ray Train job (``--ray-workers N``).
* :mod:`codeprefs.trainers.evaluate`: ``python -m trainers.evaluate`` (the paper's result files).
* :mod:`codeprefs.trainers.batchscore`: whole sequences scored in batches, longest first (the loop
  behind score, rerank and evaluate's ``--rerank``; its progress counts in
  :mod:`codeprefs.trainers.progress`).
* :mod:`codeprefs.trainers.score`: ``python -m trainers.score`` (a score per row).
* :mod:`codeprefs.trainers.candidates`, :mod:`codeprefs.trainers.ranking`,
  :mod:`codeprefs.trainers.rerank`: candidate sets read, re-ranking metrics, best-of-N
  (``python -m trainers.rerank``).
* :mod:`codeprefs.trainers.tiny`: tiny random models and tokenizers for tests and smoke runs.
"""
