"""Near-dedupe (MinHash LSH) and benchmark decontamination of preference rows, on Ray Data.

* :func:`near_dedupe`: mark all but the lowest id of each cluster of near-duplicate rows.
* :func:`decontaminate`: mark rows whose prompt shares an n-gram with a benchmark prompt.

Both take and return a Ray dataset with :data:`codeprefs.core.rows.WORK_SCHEMA`, marking drops
instead of filtering; the building blocks (tokeniser, n-grams, MinHash, LSH, connected
components) live in the submodules.
"""

from codeprefs.filters.dedupe.decontaminate import BenchmarkError, build_index, decontaminate, index_for
from codeprefs.filters.dedupe.near import near_dedupe

__all__ = ["BenchmarkError", "build_index", "decontaminate", "index_for", "near_dedupe"]
