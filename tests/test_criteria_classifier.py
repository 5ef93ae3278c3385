"""The criteria classifier (issue #13, item 2, stage 6): training on the term rule's labels with
real scikit-learn, its model file, the manifest's ``filters.criteria.classifier`` in real builds
on a real local Ray instance, and ``codeprefs criteria train`` end to end."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from codeprefs.cli import app
from codeprefs.core.schema import Aspect
from codeprefs.filters.classifier import (
    FORMAT_VERSION,
    ClassifierError,
    combine,
    load_classifier,
    prose_text,
    train_classifier,
)
from codeprefs.core.rows import empty_row
from codeprefs.filters.criteria import CriteriaLabeler, CriteriaSettings
from codeprefs.pipelines.build import BuildError, build
from codeprefs.pipelines.criteriadata import BuildMessagesError, build_messages
from codeprefs.pipelines.manifest import ManifestError, parse_manifest
from codeprefs.pipelines.steps import LabelCriteria

THINGS = ("parser", "config loader", "cache", "router", "session", "url builder", "cli flags", "json reader",
          "logger", "retry loop", "header map", "cookie jar")
# Term-rule wording per criterion (what the seeds see), and prose the lists do not hold.
FIXES = ("Fix bug in the {}", "Fix error in the {} on empty input", "Fix issue with the {}", "Bug fix for the {}",
         "Fix problem where the {} returned None")
REFACTORS = ("Refactor the {}", "Clean up the {}", "Simplify the {} code", "Clarify the {} code")
OTHER = ("Add an option to the {}", "Update the changelog for the {}", "Bump the version of the {}",
         "Document the {} settings", "Add a new {} example")
MEMORY = ("Fix memory leak in the {}",)


def messages(seed: int = 0, memory: int = 3) -> list[str]:
    """A small synthetic set of commit messages: fixes, refactors, neutral changes and ``memory``
    memory-leak fixes (too few for a classifier of their own)."""
    out = [template.format(thing) for thing in THINGS for template in FIXES + REFACTORS + OTHER]
    out += [MEMORY[0].format(thing) for thing in THINGS[:memory]]
    random.Random(seed).shuffle(out)
    return out


@pytest.fixture(scope="module")
def model():
    return train_classifier(messages(), CriteriaLabeler(), "synthetic")


def test_one_classifier_per_criterion_with_enough_seed_labels(model):
    assert model.criteria == (Aspect.FUNCTIONAL_CORRECTNESS, Aspect.READABILITY_MAINTAINABILITY)
    # the criteria with too few labelled messages are named with their counts
    assert model.skipped == {Aspect.SECURITY_HARDNESS: 0, Aspect.MEMORY_EFFICIENCY: 3,
                             Aspect.RUNTIME_EFFICIENCY: 0}
    assert model.provenance.messages == len(set(messages()))
    assert model.provenance.positives["Functional_Correctness"] == len(THINGS) * len(FIXES)
    assert model.provenance.positives["Readability_Maintainability"] == len(THINGS) * len(REFACTORS)
    assert all(0.0 < value < 1.0 for value in model.thresholds.values())


def test_the_classifier_generalises_beyond_the_seed_terms(model):
    unseen = ["Fix crash in the scheduler when the queue is empty", "Refactor and tidy the scheduler",
              "Add a new scheduler example"]
    assert [CriteriaLabeler().label(m) for m in unseen][0] is None  # no seed term in it
    predicted = model.predict(unseen)
    assert set(predicted[0]) == {Aspect.FUNCTIONAL_CORRECTNESS}
    assert set(predicted[1]) == {Aspect.READABILITY_MAINTAINABILITY}
    assert predicted[2] == {}


def test_prose_text_drops_code_spans_and_identifiers():
    assert prose_text("Fix `hash_map` in IndexError handling\n\n    Traceback: boom") == "fix\nin\nhandling"


def test_training_is_deterministic_and_order_free(tmp_path, model):
    again = train_classifier(list(reversed(messages(seed=7))), CriteriaLabeler(), "synthetic")
    first, second = model.save(tmp_path / "a.json"), again.save(tmp_path / "b.json")
    assert first.read_bytes() == second.read_bytes()


def test_save_and_load_round_trip(tmp_path, model):
    path = model.save(tmp_path / "sub" / "model.json")
    loaded = load_classifier(path)
    assert loaded.criteria == model.criteria
    assert loaded.thresholds == model.thresholds
    assert loaded.skipped == model.skipped
    assert loaded.provenance == model.provenance
    probe = ["Fix bug in the parser", "Refactor the router", "Bump the version"]
    assert (loaded.probabilities(probe) == model.probabilities(probe)).all()
    data = json.loads(path.read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["sklearn_version"] == "1.7.2"
    assert data["provenance"]["build"] == "synthetic"


def _edited(tmp_path: Path, model, edit) -> Path:
    data = json.loads(model.to_json())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_a_missing_corrupt_or_foreign_model_file_is_refused_by_name(tmp_path, model):
    missing = tmp_path / "nope.json"
    with pytest.raises(ClassifierError, match=f"{missing}: no such file"):
        load_classifier(missing)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(model.to_json()[:500])
    with pytest.raises(ClassifierError, match=f"{truncated}: not a model file \\(not JSON"):
        load_classifier(truncated)
    with pytest.raises(ClassifierError, match="format version 2, this codeprefs reads version 1"):
        load_classifier(_edited(tmp_path, model, lambda d: d.update(format_version=2)))
    with pytest.raises(ClassifierError, match="not a model file \\(format is not"):
        load_classifier(_edited(tmp_path, model, lambda d: d.update(format="something-else")))

    def cut_coef(data):
        data["arrays"]["coef"]["base64"] = base64.b64encode(b"\0" * 8).decode()

    with pytest.raises(ClassifierError, match="edited.json: corrupt model file \\(array 'coef' holds 8 bytes"):
        load_classifier(_edited(tmp_path, model, cut_coef))
    with pytest.raises(ClassifierError, match="corrupt model file \\(missing 'thresholds'\\)"):
        load_classifier(_edited(tmp_path, model, lambda d: d.pop("thresholds")))
    with pytest.raises(ClassifierError, match="corrupt model file"):
        load_classifier(_edited(tmp_path, model, lambda d: d.update(criteria=["Speed"])))


def test_too_few_seed_labels_for_every_criterion_is_refused_with_the_counts():
    with pytest.raises(ClassifierError, match="no criterion has 500 or more labelled and unlabelled messages "
                                              "among 171: .*'Functional_Correctness': 60"):
        train_classifier(messages(), CriteriaLabeler(), "synthetic", min_positives=500)
    with pytest.raises(ClassifierError, match="no commit messages"):
        train_classifier(["", "  "], CriteriaLabeler(), "synthetic")


def test_combine_keeps_the_term_rule_for_criteria_without_a_classifier(model):
    found = CriteriaLabeler().label("Fix memory leak in the parser")
    assert found is not None and found.aspects == (Aspect.MEMORY_EFFICIENCY,)
    combined = combine(found, {Aspect.FUNCTIONAL_CORRECTNESS: 0.9}, model)
    assert combined.aspects == (Aspect.MEMORY_EFFICIENCY, Aspect.FUNCTIONAL_CORRECTNESS)
    assert combined.aspect == Aspect.MEMORY_EFFICIENCY  # the term rule's label counts as certain
    # a term-rule label of a criterion the model has a classifier for is the classifier's to give
    refactor = CriteriaLabeler().label("Refactor the parser")
    assert combine(refactor, {}, model) is None
    assert combine(None, {Aspect.FUNCTIONAL_CORRECTNESS: 0.6, Aspect.READABILITY_MAINTAINABILITY: 0.7},
                   model).aspect == Aspect.READABILITY_MAINTAINABILITY


def test_combine_modes_replace_union_and_agree(model):
    found = CriteriaLabeler().label("Refactor the parser and fix bug in the lexer")
    assert found.aspects == (Aspect.FUNCTIONAL_CORRECTNESS, Aspect.READABILITY_MAINTAINABILITY)
    classified = {Aspect.READABILITY_MAINTAINABILITY: 0.8}
    assert combine(found, classified, model, "replace").aspects == (Aspect.READABILITY_MAINTAINABILITY,)
    union = combine(found, classified, model, "union")
    assert union.aspects == found.aspects and union.aspect == Aspect.READABILITY_MAINTAINABILITY
    assert combine(found, classified, model, "agree").aspects == (Aspect.READABILITY_MAINTAINABILITY,)
    assert combine(found, {}, model, "agree") is None
    # with no probability to rank by, union keeps the term rule's primary criterion
    assert combine(found, {}, model, "union").aspect == found.aspect
    with pytest.raises(ValueError, match="unknown classifier mode 'both'"):
        combine(found, classified, model, "both")  # type: ignore[arg-type]


def test_the_label_step_uses_the_classifier_and_its_mode(model):
    rows = []
    for message in ("Fix crash in the scheduler when the queue is empty", "Refactor the parser", "Bump the version"):
        row = empty_row()
        row.update(message=message, path="src/scheduler.py")
        rows.append(row)
    replaced = LabelCriteria(CriteriaSettings(), model).run([dict(row) for row in rows])
    assert [row["aspect"] for row in replaced] == ["Functional_Correctness", "Readability_Maintainability", None]
    assert replaced[2]["drop_reason"] == "no_criterion"
    agreed = LabelCriteria(CriteriaSettings(classifier_mode="agree"), model).run([dict(row) for row in rows])
    assert [row["aspect"] for row in agreed] == [None, "Readability_Maintainability", None]
    plain = LabelCriteria(CriteriaSettings()).run([dict(row) for row in rows])
    assert [row["aspect"] for row in plain] == [None, "Readability_Maintainability", None]


# -- builds ----------------------------------------------------------------------------------------

UNLABELLED = "Fix crash in the scheduler when the queue is empty"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A real repository whose commits change one Python file each, with the messages above and
    one the term lists do not label (UNLABELLED)."""
    from tests.conftest import GitRepo

    root = tmp_path_factory.mktemp("classifier-build")
    repo = GitRepo(root / "repo")
    body = ""
    for number, message in enumerate(messages(memory=0)[:90] + [UNLABELLED]):
        body += f"def step_{number}(value):\n    if value > {number}:\n        return value - {number}\n    return value\n\n"
        repo.commit(message, {"steps.py": body})
    return root, repo


def _manifest(root: Path, repo, **criteria):
    data = {"name": "classifier-build", "sources": [{"type": "git", "repos": [str(repo.path)]}],
            "pairs": {"scope": "file"}, "filters": {"criteria": criteria}, "ray": {"num_cpus": 1}}
    return parse_manifest(data, root)


def _labels(out: Path) -> dict[str, str]:
    table = pq.read_table(out / "data" / "train-00000-of-00001.parquet", columns=["message", "aspect"])
    return {message.strip(): aspect for message, aspect in
            zip(table["message"].to_pylist(), table["aspect"].to_pylist(), strict=True)}


@pytest.mark.ray
def test_train_from_a_build_and_label_a_build_with_the_classifier(ray_local, history, tmp_path):
    root, repo = history
    plain = tmp_path / "plain"
    build(_manifest(root, repo), plain)
    assert UNLABELLED not in _labels(plain)

    found = build_messages(plain)
    assert found.name == "classifier-build"
    # every commit that reached the criteria stage, once: all but the root commit (dropped at list)
    assert len(found.commits) == 90
    assert found.rows["rejected"] == 90 - found.rows["kept"] and found.rows["before_criteria"] == 1

    cli = CliRunner().invoke(app, ["criteria", "train", "--build", str(plain), "--output",
                                   str(root / "models" / "criteria.json")])
    assert cli.exit_code == 0, cli.output
    assert "wrote" in cli.output and "2 criteria classifiers trained on 90 messages of classifier-build" in cli.output
    assert "Memory_Efficiency: 0 of 90 messages" in cli.output
    model = load_classifier(root / "models" / "criteria.json")
    twice = CliRunner().invoke(app, ["criteria", "train", "--build", str(plain), "--output", str(tmp_path / "again.json")])
    assert twice.exit_code == 0, twice.output
    assert (tmp_path / "again.json").read_bytes() == (root / "models" / "criteria.json").read_bytes()
    assert model.provenance.details["rows"]["kept"] == found.rows["kept"]

    with_model = tmp_path / "with-model"
    record = build(_manifest(root, repo, classifier="models/criteria.json"), with_model)
    labels = _labels(with_model)
    assert labels[UNLABELLED] == "Functional_Correctness"  # the classifier's label, not the lists'
    expected = {}
    for message, aspects in zip(*[pq.read_table(with_model / "data" / "train-00000-of-00001.parquet")[c].to_pylist()
                                  for c in ("message", "aspects")], strict=True):
        predicted = combine(CriteriaLabeler().label(message), model.predict([message])[0], model)
        expected[message] = aspects == [a.value for a in predicted.aspects]
    assert all(expected.values())
    assert record["manifest"]["filters"]["criteria"]["classifier"] == "models/criteria.json"

    # the model's hash is in the source stage's fingerprint: another model reruns the stage
    retrained = train_classifier(found.messages[:-1], CriteriaLabeler(), "fewer")
    retrained.save(root / "models" / "criteria.json")
    again = build(_manifest(root, repo, classifier="models/criteria.json"), with_model)
    assert again["fingerprints"]["sources"] != record["fingerprints"]["sources"]
    assert not again.get("up_to_date")


def test_a_missing_model_is_a_manifest_error_and_a_corrupt_one_a_build_error(history, tmp_path):
    root, repo = history
    with pytest.raises(ManifestError, match="filters.criteria.classifier: no such model file: .*absent.json"):
        _manifest(root, repo, classifier="absent.json")
    (root / "broken.json").write_text("{")
    with pytest.raises(BuildError, match="filters.criteria.classifier: criteria classifier .*broken.json: "
                                         "not a model file"):
        build(_manifest(root, repo, classifier="broken.json"), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any work


def test_criteria_train_names_a_bad_build_folder(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["criteria", "train", "--build", str(tmp_path / "none"), "-o", str(tmp_path / "m")])
    assert missing.exit_code == 2 and f"{tmp_path / 'none'}: no such build folder" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["criteria", "train", "--build", str(tmp_path / "empty"), "-o", str(tmp_path / "m")])
    assert empty.exit_code == 2 and "no run.json in" in empty.output
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text(json.dumps({"name": "x", "outputs": [{"path": "data/a.parquet"}]}))
    broken = runner.invoke(app, ["criteria", "train", "--build", str(tmp_path / "broken"), "-o", str(tmp_path / "m")])
    assert broken.exit_code == 2 and "data/a.parquet: cannot read the build's kept rows" in broken.output
    bad_match = runner.invoke(app, ["criteria", "train", "--build", str(tmp_path / "broken"), "-o", str(tmp_path / "m"),
                                    "--match", "fuzzy"])
    assert bad_match.exit_code == 2 and "'fuzzy': expected word" in bad_match.output
    assert not (tmp_path / "m").exists()
    with pytest.raises(BuildMessagesError, match="no such build folder"):
        build_messages(tmp_path / "none")
