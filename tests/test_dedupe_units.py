"""Tokeniser, n-grams, MinHash and LSH banding: the pieces of near-dedupe, without Ray."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from codeprefs.filters.dedupe.hashing import hash_bytes, hash_strings
from codeprefs.filters.dedupe.lsh import band_keys, choose_bands, collision_probability
from codeprefs.filters.dedupe.minhash import EMPTY_SIGNATURE_VALUE, MinHasher, estimated_jaccard
from codeprefs.filters.dedupe.ngrams import field_salt, iter_ngram_blocks, jaccard, ngram_set
from codeprefs.filters.dedupe.tokenize import hash_token, iter_token_blocks, token_hashes, tokens
from tests.dedupe_helpers import commit_before, reformat, small_edit, stdlib_functions, stdlib_text


def _spans(text: str, chunk_chars: int) -> list[str]:
    encoded = text.encode("utf-8")
    return [encoded[s:e].decode("utf-8") for block in iter_token_blocks(text, chunk_chars=chunk_chars)
            for s, e in zip(block.starts, block.ends, strict=True)]


def test_tokens_are_word_runs_and_single_punctuation():
    assert tokens("x=foo(a_b, 12)") == ["x", "=", "foo", "(", "a_b", ",", "12", ")"]
    assert tokens("i+=1;//ok") == ["i", "+", "=", "1", ";", "/", "/", "ok"]
    assert tokens("naïve_日本 -> été") == ["naïve_日本", "-", ">", "été"]


@pytest.mark.parametrize("chunk_chars", [5, 7, 64, 1 << 16])
def test_vectorised_tokeniser_matches_the_rule_at_every_chunk_size(chunk_chars):
    text = "def f(x):\n\treturn x**2  # carré\n" * 5 + "  héllo wörld\t->  naïve_日本 ++x;  "
    assert _spans(text, chunk_chars) == tokens(text)
    hashes = np.concatenate([b.hashes for b in iter_token_blocks(text, chunk_chars=chunk_chars)])
    assert hashes.tolist() == [hash_token(token) for token in tokens(text)]


def test_a_word_run_longer_than_the_carry_limit_is_cut_not_lost():
    text = "x" * 100 + " y"  # 100 word bytes > MAX_RUN_CHUNKS (4) * 10-character chunks
    pieces = _spans(text, 10)
    assert "".join(pieces[:-1]) == "x" * 100 and len(pieces) > 2
    assert pieces[-1] == "y"


def test_whitespace_and_layout_do_not_change_tokens():
    code = stdlib_functions(1)[0]
    assert np.array_equal(token_hashes(code), token_hashes(reformat(code)))
    assert not np.array_equal(token_hashes(code), token_hashes(code.replace("(", "[", 1)))


def test_empty_and_blank_texts_have_no_tokens():
    assert len(token_hashes("")) == 0
    assert len(token_hashes(" \n\t ")) == 0
    assert list(iter_ngram_blocks("", 5, whole_if_short=True)) == []


def test_lowercase_folds_case():
    assert np.array_equal(token_hashes("Write A Function", lowercase=True), token_hashes("write a function"))


def test_string_hashes_match_the_byte_hash():
    values = pa.array(["", "a", "abc", None, "déjà vu"]).slice(1)
    expected = [hash_bytes(b"a"), hash_bytes(b"abc"), hash_bytes(b""), hash_bytes("déjà vu".encode())]
    assert hash_strings(values).tolist() == expected
    chunked = pa.chunked_array([pa.array(["a"]), pa.array(["abc"])])
    assert hash_strings(chunked).tolist() == [hash_bytes(b"a"), hash_bytes(b"abc")]


def test_ngrams_cover_the_text_in_order_across_chunks():
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa " * 20
    whole = np.concatenate([b.hashes for b in iter_ngram_blocks(text, 5)])
    chunked = list(iter_ngram_blocks(text, 5, chunk_chars=11))
    assert len(chunked) > 1
    assert np.array_equal(np.concatenate([b.hashes for b in chunked]), whole)
    assert len(whole) == len(tokens(text)) - 5 + 1
    first = chunked[0]
    assert text.encode()[first.starts[0]:first.ends[0]].decode() == "alpha beta gamma delta epsilon"


def test_short_texts_give_one_ngram_only_when_asked():
    assert list(iter_ngram_blocks("a b c", 5)) == []
    blocks = list(iter_ngram_blocks("a b c", 5, whole_if_short=True))
    assert len(blocks) == 1 and len(blocks[0]) == 1
    other = list(iter_ngram_blocks("a b d", 5, whole_if_short=True))[0]
    assert blocks[0].hashes[0] != other.hashes[0]


def test_fields_are_salted_apart():
    code = "x = compute(a, b) + other(c)"
    assert field_salt(0) != field_salt(1)
    swapped = ngram_set(["left side text here", code], 3)
    straight = ngram_set([code, "left side text here"], 3)
    assert jaccard(swapped, straight) == 0.0


def test_signature_does_not_depend_on_block_size_or_batching():
    documents = [[code, commit_before(code)] for code in stdlib_functions(6)] + [["", None]]
    reference, present = MinHasher(num_perm=64, ngram=5, seed=3).signatures(documents)
    tiny_blocks, _ = MinHasher(num_perm=64, ngram=5, seed=3, block_shingles=7).signatures(documents)
    one_by_one = np.vstack([MinHasher(num_perm=64, ngram=5, seed=3).signatures([d])[0] for d in documents])
    assert np.array_equal(reference, tiny_blocks)
    assert np.array_equal(reference, one_by_one)
    assert present.tolist() == [True] * 6 + [False]
    assert (reference[-1] == EMPTY_SIGNATURE_VALUE).all()


def test_signature_estimates_exact_jaccard():
    hasher = MinHasher(num_perm=256, ngram=20, seed=1)
    errors = []
    for code in stdlib_functions(20):
        edited = small_edit(code)
        signatures, _ = hasher.signatures([[code], [edited]])
        exact = jaccard(ngram_set([code], 20), ngram_set([edited], 20))
        errors.append(estimated_jaccard(signatures[0], signatures[1]) - exact)
    # 256 permutations: standard error <= 0.5 / sqrt(256) ~ 0.03 per pair.
    assert abs(np.mean(errors)) < 0.03
    assert np.max(np.abs(errors)) < 0.12


def test_memory_per_document_is_bounded_by_the_block_not_the_document():
    text = stdlib_text(8_000_000)
    peaks = []
    for size in (500_000, 8_000_000):
        hasher = MinHasher(num_perm=256, ngram=20)
        document = text[:size]
        tracemalloc.start()
        hasher.signatures([[document]])
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # The naive (shingles x permutations) array of the 8 MB text would be about 4 GB.
    assert peaks[1] < 64 * 2**20
    assert peaks[1] < 2 * peaks[0]


def test_chosen_bands_balance_false_positives_and_negatives():
    bands, rows = choose_bands(0.75, 256)
    assert bands * rows <= 256
    assert collision_probability(0.95, bands, rows) > 0.99
    assert collision_probability(0.5, bands, rows) < 0.02
    # No other split with b * r <= 256 has a smaller weighted error than the chosen one.
    grid_low, grid_high = np.linspace(0, 0.75, 2001), np.linspace(0.75, 1, 2001)

    def error(b, r):
        return 0.5 * np.trapezoid(collision_probability(grid_low, b, r), grid_low) + 0.5 * np.trapezoid(
            1 - collision_probability(grid_high, b, r), grid_high)

    best = error(bands, rows)
    for b, r in itertools.product(range(1, 65), range(1, 40)):
        if b * r <= 256:
            assert error(b, r) >= best - 1e-12
    # A higher threshold asks for longer bands.
    assert choose_bands(0.9, 256)[1] > rows


def test_band_keys_change_only_with_their_band():
    signatures = np.arange(2 * 12, dtype=np.uint32).reshape(2, 12)
    signatures[1] = signatures[0]
    signatures[1, 5] += 1  # band 1 of 3 bands of 4 rows
    keys = band_keys(signatures, 3, 4, seed=7)
    assert keys[0, 0] == keys[1, 0] and keys[0, 2] == keys[1, 2]
    assert keys[0, 1] != keys[1, 1]
    assert len(set(keys[0].tolist())) == 3  # equal values in different bands differ
    with pytest.raises(ValueError, match="too short"):
        band_keys(signatures, 4, 4)


def test_manifest_accepts_the_issue_form_and_rejects_bad_near_settings(tmp_path):
    import yaml

    from codeprefs.pipelines.manifest import ManifestError, parse_manifest

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "a.jsonl").write_text('{"prompt": "x"}\n', encoding="utf-8")
    text = f"""
name: run
sources: [{{type: git, repos: [/tmp/repo]}}]
dedupe: {{exact: true, near: {{fields: [chosen, rejected], ngram: 20, threshold: 0.75, num_perm: 256}}}}
decontaminate: {{benchmarks: [{tmp_path}/bench/*.jsonl], field: prompt, ngram: 13}}
"""
    manifest = parse_manifest(yaml.safe_load(text), tmp_path)
    near = manifest.dedupe.near
    assert (near.fields, near.ngram, near.threshold, near.num_perm) == (["chosen", "rejected"], 20, 0.75, 256)
    assert (near.bands, near.rows, near.verify_jaccard) == (None, None, True)
    assert manifest.decontaminate.benchmarks == [f"{tmp_path}/bench/a.jsonl"]
    assert manifest.resolved()["dedupe"]["near"]["threshold"] == 0.75
    base = {"name": "run", "sources": [{"type": "git", "repos": ["/tmp/repo"]}]}
    for near_settings, message in (
        ({"bands": 8}, "set both bands and rows"),
        ({"bands": 30, "rows": 10}, "exceeds num_perm"),
        ({"fields": ["code"]}, "unknown field"),
        ({"threshold": 1.0}, "threshold"),
        ({"shingles": 5}, "unknown key"),
    ):
        with pytest.raises(ManifestError, match=message):
            parse_manifest({**base, "dedupe": {"near": near_settings}}, tmp_path)
