"""Synthesized preference pairs from correct solutions, verified by running their tests.

* :mod:`~pipelines.synthesis.mutations`: seeded tree-sitter mutation operators (bug injection);
* :mod:`~pipelines.synthesis.readability`: renamed, comment-free variants (readability);
* :mod:`~pipelines.synthesis.harness`, :mod:`~pipelines.synthesis.sandbox`,
  :mod:`~pipelines.synthesis.verify`: assembling, isolating and running the programs;
* :mod:`~pipelines.synthesis.pairs`: the Ray stage that turns records into rows;
* :mod:`~pipelines.synthesis.llm`, :mod:`~pipelines.synthesis.prompts`: the optional LLM backend.
"""
