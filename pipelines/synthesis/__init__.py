"""Synthesized preference pairs from correct solutions, verified by running their tests.

* :mod:`~pipelines.synthesis.mutations`: seeded tree-sitter mutation operators (bug injection);
* :mod:`~pipelines.synthesis.readability`: renamed, comment-free variants (readability);
* :mod:`~pipelines.synthesis.harness`, :mod:`~pipelines.synthesis.sandbox`,
  :mod:`~pipelines.synthesis.verify`: assembling, isolating and running the programs;
* :mod:`~pipelines.synthesis.pairs`: the Ray stage that turns records into rows;
* :mod:`~pipelines.synthesis.settings`: the ``synthesis`` section's settings models, which
  :mod:`~pipelines.synthesis.plan` turns into one stage per solutions source on the driver;
* :mod:`~pipelines.synthesis.llm`, :mod:`~pipelines.synthesis.prompts`: the optional LLM backend.
"""
