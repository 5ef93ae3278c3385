"""Synthesized preference pairs from correct solutions, verified by running their tests.

* :mod:`~codeprefs.pipelines.synthesis.mutations`: seeded tree-sitter mutation operators (bug injection);
* :mod:`~codeprefs.pipelines.synthesis.readability`: renamed, comment-free variants (readability);
* :mod:`~codeprefs.pipelines.synthesis.harness`, :mod:`~codeprefs.pipelines.synthesis.sandbox`,
  :mod:`~codeprefs.pipelines.synthesis.verify`: assembling, isolating and running the programs;
* :mod:`~codeprefs.pipelines.synthesis.pairs`: the Ray stage that turns records into rows;
* :mod:`~codeprefs.pipelines.synthesis.settings`: the ``synthesis`` section's settings models, which
  :mod:`~codeprefs.pipelines.synthesis.plan` turns into one stage per solutions source on the driver;
* :mod:`~codeprefs.pipelines.synthesis.llm`, :mod:`~codeprefs.pipelines.synthesis.prompts`: the optional LLM backend.
"""
