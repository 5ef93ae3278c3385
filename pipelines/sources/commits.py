"""What the commit sources (``git`` and ``export``) share: the commit filters and the pairing.

Both list commits, keep one split of them, filter their messages, label their criteria, read
the two versions of the changed file (each kind its own way) and scope the change to a pair.
:class:`CommitSteps` holds the manifest sections that shape those shared steps (``filters``,
``pairs``); it is a field of both kinds' recipes, so it is part of their fingerprints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeprefs.core.files import file_sha256, folder_sha256
from codeprefs.core.localpaths import resolve_path
from codeprefs.filters.classifier import CriteriaClassifier, load_classifier
from codeprefs.filters.criteria import CriteriaSettings
from codeprefs.filters.messages import MessageFilter, MessageFilterSettings
from codeprefs.pipelines.recipes import not_fingerprinted
from codeprefs.pipelines.scopes import ScopeSettings
from codeprefs.pipelines.steps import AssemblePairs, FilterMessages, LabelCriteria, ScopePairs, SplitCommits, Step


@dataclass(frozen=True)
class CommitSteps:
    """The settings of the steps every commit source runs (see the module doc)."""

    message: MessageFilterSettings
    criteria: CriteriaSettings
    scope: ScopeSettings  # pairs, with the parse limits of filters.validation
    max_bytes: int  # a version larger than this is not read (pairs.max_file_bytes; for scope: file
    # filters.validation.max_bytes)
    # the sha256 of filters.criteria.classifier's model file: a new model reruns the stage
    classifier_sha256: str | None = None
    classifier: CriteriaClassifier | None = not_fingerprinted(
        "loaded from filters.criteria.classifier, whose file `classifier_sha256` hashes", default=None)
    # the sha256 of filters.criteria.terms_dir's lists (names and contents): edited terms rerun the stage
    terms_sha256: str | None = None
    terms_root: str | None = not_fingerprinted(
        "filters.criteria.terms_dir resolved against the manifest's folder; `terms_sha256` hashes its lists",
        default=None)

    @classmethod
    def from_manifest(cls, manifest: Any) -> CommitSteps:
        """The commit steps of ``manifest``; a classifier model that cannot be loaded raises
        :class:`codeprefs.filters.classifier.ClassifierError` naming the file."""
        filters = manifest.filters
        validation = filters.validation
        model, digest = None, None
        if filters.criteria.classifier is not None:
            path = resolve_path(filters.criteria.classifier, manifest.base_dir)
            model = load_classifier(path)
            digest = file_sha256(path)
        terms_root, terms_digest = None, None
        if filters.criteria.terms_dir is not None:
            terms_root = str(resolve_path(filters.criteria.terms_dir, manifest.base_dir).resolve())
            terms_digest = folder_sha256(Path(terms_root), "*.list")
        pairs = manifest.pairs.model_dump()
        # the largest file version read and parsed: a side's bound for whole files, else pairs'
        max_file_bytes = pairs.pop("max_file_bytes")
        if pairs["scope"] == "file":
            max_file_bytes = validation.max_bytes
        return cls(filters.message, filters.criteria,
                   ScopeSettings(**pairs, max_bytes=max_file_bytes, parse_timeout_s=validation.parse_timeout_s),
                   max_file_bytes, digest, model, terms_digest, terms_root)

    def filters(self, split: SplitCommits | None) -> list[Step]:
        """Split, message and criteria: all decided before any file is read."""
        return [*([split] if split is not None else []),
                FilterMessages(MessageFilter(self.message)), LabelCriteria(self.labelling(), self.classifier)]

    def labelling(self) -> CriteriaSettings:
        """The criteria settings with ``terms_dir`` as the folder it names from the manifest's
        folder (a worker's current directory is not the manifest's)."""
        if self.terms_root is None:
            return self.criteria
        return self.criteria.model_copy(update={"terms_dir": self.terms_root})

    def pairing(self) -> list[Step]:
        """The two versions, once read, scoped to the change and made a pair."""
        return [ScopePairs(self.scope), AssemblePairs()]
