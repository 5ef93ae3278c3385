"""A criteria classifier trained on the term rule's labels (the Themis paper's stage 6).

The term lists (:mod:`codeprefs.filters.criteria`) only see the words they list. A classifier
trained on the labels they give a build's own messages (the *term-seed* labels) can also weigh
the words around them. :func:`train_classifier` fits one binary classifier per criterion with
scikit-learn, on CPU, in seconds, with no download:

* **features**: the message's prose (:func:`codeprefs.filters.wording.prose_clauses`: no code
  spans, identifiers, paths, URLs or quoted output, as the word rule sees it), hashed into word
  1-2-grams and character 3-5-grams within words (``HashingVectorizer``, stateless), weighted by
  TF-IDF (sub-linear term frequency, smoothed IDF, l2 norm) over the columns seen in at least
  ``min_df`` training messages; the other columns are left out;
* **model**: a logistic regression per criterion (liblinear, balanced class weights, fixed seed);
* **threshold**: per criterion, the probability that maximises F1 against the seed labels on
  out-of-fold predictions (stratified k-fold with a fixed seed), so no message is scored by a
  model that saw it.

A criterion with fewer than ``min_positives`` seed-labelled messages gets no classifier: it is
listed in the model's ``skipped`` with its count, and a build keeps the term rule for it.

**File format** (``FORMAT``, version ``FORMAT_VERSION``): one JSON file, no pickle. Metadata
(scikit-learn version, criteria, thresholds, provenance) is plain JSON; the arrays (kept
feature columns, their IDF, the coefficients) are little-endian int32/float32 in base64. The
same messages give a byte-identical file. :func:`load_classifier` refuses a missing, unreadable
or corrupt file, or one of another format or version, naming the file.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from codeprefs.core.files import write_text_atomic
from codeprefs.core.schema import Aspect
from codeprefs.filters.criteria import PRIMARY_PRIORITY, CriteriaLabeler, CriteriaMatch
from codeprefs.filters.wording import prose_clauses

FORMAT = "codeprefs-criteria-classifier"
FORMAT_VERSION = 1
SEED = 13
MIN_POSITIVES = 10
MIN_DF = 2
FOLDS = 5
# The hashing spaces of the two feature kinds (stateless: nothing to store but these settings).
WORD_FEATURES = 2**20
CHAR_FEATURES = 2**20
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (3, 5)
MAX_PROSE_CHARS = 4000  # the head of a long message: its subject and first paragraphs


class ClassifierError(ValueError):
    """A model file that cannot be used, or training data a model cannot be fitted on; the
    message names the file or the criterion."""


def prose_text(message: str) -> str:
    """The prose of ``message`` the classifier reads: the word rule's clauses, one per line."""
    text = "\n".join(" ".join(words) for words in prose_clauses(message or ""))
    return text[:MAX_PROSE_CHARS]


def _hashers():
    from sklearn.feature_extraction.text import HashingVectorizer

    common = {"alternate_sign": False, "norm": None, "lowercase": False, "dtype": np.float64}
    return (HashingVectorizer(analyzer="word", ngram_range=WORD_NGRAMS, n_features=WORD_FEATURES,
                              token_pattern=r"(?u)\b\w+\b", **common),
            HashingVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, n_features=CHAR_FEATURES, **common))


def _counts(texts: Sequence[str]):
    """Raw hashed n-gram counts of ``texts`` (a CSR matrix over both hashing spaces)."""
    from scipy import sparse

    words, chars = _hashers()
    return sparse.hstack([words.transform(texts), chars.transform(texts)], format="csr")


def _weigh(counts, columns: np.ndarray, idf: np.ndarray):
    """TF-IDF of ``counts`` restricted to ``columns``: sub-linear tf x idf, l2-normalised rows."""
    from sklearn.preprocessing import normalize

    kept = counts[:, columns].astype(np.float64)
    kept.data = 1.0 + np.log(kept.data)
    kept = kept.multiply(idf.astype(np.float64)).tocsr()
    return normalize(kept, norm="l2", copy=False)


@dataclass(frozen=True)
class Provenance:
    """What a model was trained on."""

    build: str  # the build's name (run.json) or a caller's description
    messages: int  # distinct messages trained on
    positives: dict[str, int]  # seed-labelled messages per criterion
    seed_rule: str  # the term rule that gave the seed labels, e.g. "word"
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the rows read, per source


@dataclass(frozen=True, eq=False)  # arrays: compared and hashed by identity
class CriteriaClassifier:
    """One logistic regression per criterion over shared TF-IDF features (see the module doc)."""

    criteria: tuple[Aspect, ...]  # those with a classifier, in PRIMARY_PRIORITY order
    columns: np.ndarray  # int32: the hashed feature columns kept
    idf: np.ndarray  # float32, one per kept column
    coef: np.ndarray  # float32, criteria x kept columns
    intercept: np.ndarray  # float32, one per criterion
    thresholds: dict[Aspect, float]
    skipped: dict[Aspect, int]  # criteria without a classifier: their seed-labelled messages
    provenance: Provenance
    sklearn_version: str

    def probabilities(self, messages: Sequence[str]) -> np.ndarray:
        """P(criterion | message) for each message (rows) and each of :attr:`criteria` (columns)."""
        if not messages:
            return np.zeros((0, len(self.criteria)))
        features = _weigh(_counts([prose_text(m) for m in messages]), self.columns, self.idf)
        scores = features @ self.coef.astype(np.float64).T + self.intercept.astype(np.float64)
        return 1.0 / (1.0 + np.exp(-np.asarray(scores)))

    def predict(self, messages: Sequence[str]) -> list[dict[Aspect, float]]:
        """Per message, the criteria whose probability reaches their threshold, with it."""
        out = []
        for row in self.probabilities(messages):
            out.append({aspect: float(p) for aspect, p in zip(self.criteria, row, strict=True)
                        if p >= self.thresholds[aspect]})
        return out

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sklearn_version": self.sklearn_version,
            "features": _feature_settings(),
            "criteria": [aspect.value for aspect in self.criteria],
            "thresholds": {aspect.value: self.thresholds[aspect] for aspect in self.criteria},
            "skipped": {aspect.value: count for aspect, count in self.skipped.items()},
            "provenance": {"build": self.provenance.build, "messages": self.provenance.messages,
                           "positives": self.provenance.positives, "seed_rule": self.provenance.seed_rule,
                           "details": self.provenance.details},
            "arrays": {"columns": _encode(self.columns, "<i4"), "idf": _encode(self.idf, "<f4"),
                       "coef": _encode(self.coef, "<f4"), "intercept": _encode(self.intercept, "<f4")},
        }
        return json.dumps(data, sort_keys=True, indent=1) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (one JSON file) through a temporary name; return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, self.to_json())
        return path


def _feature_settings() -> dict[str, Any]:
    return {"text": "prose clauses, one per line", "max_chars": MAX_PROSE_CHARS,
            "word": {"ngrams": list(WORD_NGRAMS), "n_features": WORD_FEATURES},
            "char_wb": {"ngrams": list(CHAR_NGRAMS), "n_features": CHAR_FEATURES},
            "tf": "sublinear", "idf": "smooth", "norm": "l2"}


def _encode(array: np.ndarray, dtype: str) -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype=dtype)
    return {"dtype": dtype, "shape": list(data.shape), "base64": base64.b64encode(data.tobytes()).decode("ascii")}


def _decode(item: Any, dtype: str, name: str) -> np.ndarray:
    if not isinstance(item, dict) or item.get("dtype") != dtype or not isinstance(item.get("shape"), list):
        raise ValueError(f"array {name!r} is not a {dtype} array")
    raw = base64.b64decode(item["base64"], validate=True)
    shape = tuple(int(n) for n in item["shape"])
    if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise ValueError(f"array {name!r} holds {len(raw)} bytes, not a {shape} {dtype} array")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def load_classifier(path: str | Path) -> CriteriaClassifier:
    """Read a model written by :meth:`CriteriaClassifier.save`; refuse anything else by name."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ClassifierError(f"criteria classifier {path}: no such file") from None
    except OSError as error:
        raise ClassifierError(f"criteria classifier {path}: cannot read it: {error.strerror or error}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClassifierError(f"criteria classifier {path}: not a model file (not JSON: {error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ClassifierError(f"criteria classifier {path}: not a model file (format is not {FORMAT!r}; "
                              "make one with `codeprefs criteria train`)")
    if data.get("format_version") != FORMAT_VERSION:
        raise ClassifierError(f"criteria classifier {path}: format version {data.get('format_version')!r}, "
                              f"this codeprefs reads version {FORMAT_VERSION}: train it again")
    try:
        if data["features"] != _feature_settings():
            raise ValueError("its feature settings differ from this version's")
        criteria = tuple(Aspect(name) for name in data["criteria"])
        arrays = data["arrays"]
        columns = _decode(arrays["columns"], "<i4", "columns")
        idf = _decode(arrays["idf"], "<f4", "idf")
        coef = _decode(arrays["coef"], "<f4", "coef")
        intercept = _decode(arrays["intercept"], "<f4", "intercept")
        if columns.ndim != 1 or idf.shape != columns.shape or coef.shape != (len(criteria), len(columns)) \
                or intercept.shape != (len(criteria),):
            raise ValueError("array shapes do not agree with each other and the criteria")
        if len(columns) and (columns.min() < 0 or columns.max() >= WORD_FEATURES + CHAR_FEATURES):
            raise ValueError("a feature column is out of range")
        thresholds = {Aspect(name): float(value) for name, value in data["thresholds"].items()}
        if set(thresholds) != set(criteria):
            raise ValueError("thresholds do not name the same criteria")
        prov = data["provenance"]
        provenance = Provenance(str(prov["build"]), int(prov["messages"]), dict(prov["positives"]),
                                str(prov["seed_rule"]), dict(prov.get("details") or {}))
        return CriteriaClassifier(criteria, columns, idf, coef, intercept, thresholds,
                                  {Aspect(name): int(n) for name, n in data["skipped"].items()},
                                  provenance, str(data["sklearn_version"]))
    except (KeyError, TypeError, ValueError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise ClassifierError(f"criteria classifier {path}: corrupt model file ({detail})") from None


def _best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best F1 against ``labels`` (ties: the higher threshold),
    halfway between the lowest score taken and the next."""
    order = np.argsort(-scores, kind="stable")
    ranked, truth = scores[order], labels[order]
    hits = np.cumsum(truth)
    taken = np.arange(1, len(ranked) + 1)
    f1 = 2 * hits / (taken + truth.sum())
    # only cut between distinct scores: everything at or above the threshold is taken
    last = np.r_[ranked[1:] != ranked[:-1], True]
    best = int(np.flatnonzero(last)[np.argmax(f1[last])])
    # halfway to the next lower score, so a message scored a little below the cut still counts
    below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
    return float((ranked[best] + below) / 2)


def train_classifier(messages: Sequence[str], labeler: CriteriaLabeler, provenance_build: str, *,
                     min_positives: int = MIN_POSITIVES, details: dict[str, Any] | None = None,
                     log=lambda line: None) -> CriteriaClassifier:
    """Fit one classifier per criterion on the labels ``labeler`` (the term rule) gives
    ``messages``; a criterion with fewer than ``min_positives`` labelled messages is skipped
    (logged, and named in the model). Raises :class:`ClassifierError` when none can be fitted."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one thread: the same sums in the same order on any machine
        return _train(messages, labeler, provenance_build, min_positives, details or {}, log)


def _train(messages: Sequence[str], labeler: CriteriaLabeler, provenance_build: str, min_positives: int,
           details: dict[str, Any], log) -> CriteriaClassifier:
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    texts = sorted({m for m in messages if m and m.strip()})  # order-free: the same set, the same model
    if not texts:
        raise ClassifierError("no commit messages to train on")
    matches = [labeler.label(m) for m in texts]
    labels = {aspect: np.array([bool(found and aspect in found.aspects) for found in matches], dtype=np.int8)
              for aspect in PRIMARY_PRIORITY}
    positives = {aspect.value: int(labels[aspect].sum()) for aspect in PRIMARY_PRIORITY}
    criteria, skipped = [], {}
    for aspect in PRIMARY_PRIORITY:
        count = positives[aspect.value]
        negatives = len(texts) - count
        if count < min_positives or negatives < min_positives:
            skipped[aspect] = count
            log(f"{aspect.value}: {count} of {len(texts)} messages labelled by the term rule "
                f"(fewer than {min_positives} {'positive' if count < min_positives else 'negative'} "
                "examples): no classifier, a build keeps the term rule for it")
        else:
            criteria.append(aspect)
    if not criteria:
        raise ClassifierError(f"no criterion has {min_positives} or more labelled and unlabelled messages "
                              f"among {len(texts)}: {positives}")
    counts = _counts([prose_text(t) for t in texts])
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    columns = np.flatnonzero(document_frequency >= MIN_DF).astype(np.int32)
    if not len(columns):
        raise ClassifierError(f"no feature occurs in {MIN_DF} or more of the {len(texts)} messages")
    n = len(texts)
    idf = (np.log((1 + n) / (1 + document_frequency[columns])) + 1.0).astype(np.float32)
    features = _weigh(counts, columns, idf)

    def fit(x, y):
        return LogisticRegression(solver="liblinear", C=4.0, class_weight="balanced", random_state=SEED,
                                  max_iter=1000).fit(x, y)

    coefs, intercepts, thresholds = [], [], {}
    for aspect in criteria:
        y = labels[aspect]
        folds = StratifiedKFold(n_splits=min(FOLDS, int(y.sum()), int(n - y.sum())), shuffle=True,
                                random_state=SEED)
        held_out = np.zeros(n)
        for train, test in folds.split(np.zeros(n), y):
            held_out[test] = fit(features[train], y[train]).predict_proba(features[test])[:, 1]
        thresholds[aspect] = round(_best_threshold(y, held_out), 6)
        model = fit(features, y)
        coefs.append(model.coef_[0].astype(np.float32))
        intercepts.append(np.float32(model.intercept_[0]))
        log(f"{aspect.value}: {int(y.sum())} of {n} messages labelled; threshold {thresholds[aspect]:.3f}")
    provenance = Provenance(provenance_build, n, positives, labeler.match, details)
    return CriteriaClassifier(tuple(criteria), columns, idf, np.vstack(coefs), np.array(intercepts, dtype=np.float32),
                              thresholds, skipped, provenance, sklearn.__version__)


CombineMode = Literal["replace", "union", "agree"]


def combine(found: CriteriaMatch | None, classified: dict[Aspect, float], model: CriteriaClassifier,
            mode: CombineMode = "replace") -> CriteriaMatch | None:
    """The labels of a build with a classifier, from the term rule's match ``found`` and the
    criteria the classifier gives (``classified``: probability at or above the threshold).

    For the criteria the model has a classifier for, ``mode`` decides: ``replace`` (the default)
    takes the classifier's labels alone; ``union`` the term rule's and the classifier's (more
    recall); ``agree`` only those both give (more precision). The criteria the model has no
    classifier for keep the term rule's labels in every mode. The primary criterion is the one
    the classifier gives the highest probability (a term-rule label of a criterion without a
    classifier counts as certain, one the classifier did not confirm as 0); ties go to the term
    rule's primary, then to the more specific criterion (PRIMARY_PRIORITY)."""
    if mode not in ("replace", "union", "agree"):
        raise ValueError(f"unknown classifier mode {mode!r}; expected replace, union or agree")
    terms = set(found.aspects) if found is not None else set()
    uncovered = {aspect for aspect in terms if aspect not in model.criteria}
    if mode == "replace":
        labels = set(classified) | uncovered
    elif mode == "union":
        labels = set(classified) | terms
    else:
        labels = (set(classified) & terms) | uncovered
    if not labels:
        return None
    ordered = tuple(aspect for aspect in PRIMARY_PRIORITY if aspect in labels)

    def score(aspect: Aspect) -> tuple[float, bool]:
        probability = classified.get(aspect, 1.0 if aspect in uncovered else 0.0)
        return probability, found is not None and aspect == found.aspect

    primary = max(ordered, key=score)  # the first of equal scores: the more specific
    matched = found.terms if found is not None else {}
    return CriteriaMatch(aspect=primary, aspects=ordered,
                         terms={aspect: matched.get(aspect, ()) for aspect in ordered})
