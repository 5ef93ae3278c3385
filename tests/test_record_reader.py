"""The one record reader (codeprefs.core.records): every format, chunks, offsets, errors."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.core.records import (
    FileChunk,
    Malformed,
    RecordFileError,
    column_names,
    count_records,
    file_records,
    is_saved_dataset,
    iter_batches,
    jsonl_line_starts,
    jsonl_records,
    located_records,
    plan_chunks,
    read_rows,
    read_table,
    record_format,
    row_groups_for,
    saved_dataset_tables,
)

RECORDS = [{"n": n, "text": f"record {n}"} for n in range(7)]


def _lines(records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def _values(located):
    return [record for _, _, record in located]


def _parquet(path, rows: int, row_group_size: int):
    table = pa.table({"n": list(range(rows)), "text": [f"record {n}" for n in range(rows)]})
    pq.write_table(table, path, row_group_size=row_group_size, compression="none")
    return path


def test_formats_come_from_the_name():
    assert [record_format(name) for name in ("a.jsonl", "a.JSON", "a.ndjson", "a.json.gz",
                                             "a.parquet", "a.arrow")] == [
        "jsonl", "jsonl", "jsonl", "jsonl.gz", "parquet", "arrow"]
    with pytest.raises(ValueError, match="notes.txt: unsupported file type"):
        record_format("notes.txt")


def test_json_lines_json_arrays_and_gzip_of_either_read_the_same_records(tmp_path):
    (tmp_path / "a.jsonl").write_text(_lines(RECORDS[:3]) + "\n  \n" + _lines(RECORDS[3:]))
    (tmp_path / "a.json").write_text("  \n" + json.dumps(RECORDS, indent=1))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(_lines(RECORDS).encode()))
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(json.dumps(RECORDS).encode()))
    for name in ("a.jsonl", "a.json", "a.jsonl.gz", "a.json.gz"):
        assert _values(file_records(tmp_path / name)) == RECORDS, name
        assert count_records(tmp_path / name) == 7, name
    lines = [where.line() for _, where, _ in file_records(tmp_path / "a.jsonl")]
    assert lines == [1, 2, 3, 6, 7, 8, 9]  # blank lines skipped, lines still counted
    assert [where() for _, where, _ in file_records(tmp_path / "a.json", "bench.json")][:2] == [
        "bench.json:1", "bench.json:2"]  # an array's records are numbered
    assert read_table(tmp_path / "a.jsonl.gz").to_pylist() == RECORDS


def test_a_json_array_cannot_be_cut_into_chunks_and_a_broken_one_names_its_file(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(RECORDS))
    with pytest.raises(ValueError, match="a.json: a JSON array; codeprefs reads JSON Lines"):
        plan_chunks(str(tmp_path / "a.json"), "a.json")
    (tmp_path / "b.json").write_text('[{"n": 1}, {"n": ')
    with pytest.raises(RecordFileError, match="b.json: not a valid JSON array: Expecting value") as caught:
        list(file_records(tmp_path / "b.json", "b.json"))
    assert caught.value.cause.startswith("Expecting value: line 1 column 18")


def test_a_malformed_line_is_named_by_file_and_line_even_in_a_later_chunk(tmp_path):
    path = tmp_path / "e.jsonl"
    body = [json.dumps({"n": n, "pad": "x" * 40}) for n in range(30)]
    body[21] = "{not json"
    body[25] = "[1, 2]"
    body[27] = '{"deep": ' + "[" * 100_000
    path.write_bytes(("\n".join(body) + "\n").encode() + b'{"bad": "\xff"}\n')
    chunks = plan_chunks(str(path), "in/e.jsonl", chunk_bytes=256)
    assert len(chunks) > 5
    malformed = [record for chunk in chunks for _, _, record in located_records(chunk)
                 if isinstance(record, Malformed)]
    assert [(m.where, m.kind, m.error) for m in malformed] == [
        ("in/e.jsonl:22", "not_json", "not JSON: Expecting property name enclosed in double quotes"),
        ("in/e.jsonl:26", "not_object", "a JSON list, not an object"),
        ("in/e.jsonl:28", "too_deep", "nested too deeply"),
        ("in/e.jsonl:31", "not_utf8", "not UTF-8"),
    ]
    assert malformed[0].cause == "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    assert malformed[1].cause == "list"
    good = [record["n"] for chunk in chunks for _, _, record in located_records(chunk)
            if not isinstance(record, Malformed)]
    assert good == [n for n in range(30) if n not in (21, 25, 27)]


def test_json_lines_from_a_byte_offset_with_a_known_first_line_and_a_limit(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(_lines(RECORDS[:2]) + "\n" + _lines(RECORDS[2:]))
    starts = jsonl_line_starts(path)
    assert [number for number, _ in starts] == [1, 2, 4, 5, 6, 7, 8]
    number, offset = starts[3]
    located = list(jsonl_records(str(path), "a.jsonl", offset, first_line=number, limit=2))
    assert [(position, where(), record) for position, where, record in located] == [
        (starts[3][1], "a.jsonl:5", RECORDS[3]), (starts[4][1], "a.jsonl:6", RECORDS[4])]
    counted = list(jsonl_records(str(path), "a.jsonl", offset + 1))  # mid-line: starts at the next
    assert [where.line() for _, where, _ in counted] == [6, 7, 8]


def test_a_truncated_gzip_file_names_the_file_and_the_line_reached(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    data = gzip.compress(_lines([{"n": n, "pad": "y" * 500} for n in range(200)]).encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordFileError, match=r"^x.jsonl.gz: truncated or corrupt gzip file \(after line \d+\)"):
        list(file_records(path, "x.jsonl.gz"))


def test_parquet_offset_and_limit_cross_row_group_boundaries(tmp_path):
    path = _parquet(tmp_path / "t.parquet", rows=100, row_group_size=10)
    assert count_records(path) == 100 and column_names(path) == ["n", "text"]
    for start, limit in [(0, 4), (8, 4), (9, 13), (95, 50), (40, 10), (0, None), (99, 1)]:
        got = [row["n"] for row in read_rows(path, start, limit)]
        end = 100 if limit is None else min(100, start + limit)
        assert got == list(range(start, end)), (start, limit)
    batches = list(iter_batches(path, 8, 14, columns=["n"]))
    assert [batch.num_rows for batch in batches] == [2, 10, 2]
    assert batches[0].schema.names == ["n"]
    assert read_rows(path, 100, 4) == []


def test_chunk_k_of_a_parquet_file_reads_only_the_row_groups_that_hold_it(tmp_path):
    path = _parquet(tmp_path / "t.parquet", rows=1000, row_group_size=40)
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups == 25
    chunk = 4  # records a chunk, as solutions cut them
    asked = [row_groups_for(metadata, k * chunk, (k + 1) * chunk) for k in range(250)]
    assert asked[0] == ([0], 0)
    assert asked[13] == ([1], 12)  # rows 52-55: 12 rows into group 1
    assert asked[249] == ([24], 36)
    assert sum(len(groups) for groups, _ in asked) == 250  # each chunk reads one group, not 25
    assert row_groups_for(metadata, 38, 43) == ([0, 1], 38)  # a chunk across a boundary

    # The proof without timing: break row group 7 on disk; chunks elsewhere still read.
    column = metadata.row_group(7).column(0)
    begin = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    for offset in range(begin, begin + column.total_compressed_size):
        data[offset] = 0xFF
    path.write_bytes(bytes(data))
    assert [row["n"] for row in read_rows(path, 276, 4)] == [276, 277, 278, 279]  # group 6
    assert [row["n"] for row in read_rows(path, 320, 4)] == [320, 321, 322, 323]  # group 8
    with pytest.raises(RecordFileError, match=r"^tasks.parquet: unreadable Parquet file \(rows 281 and on\)"):
        read_rows(path, 280, 4, label="tasks.parquet")


def test_parquet_and_arrow_chunks_locate_rows(tmp_path):
    path = _parquet(tmp_path / "t.parquet", rows=25, row_group_size=10)
    chunks = plan_chunks(str(path), "t.parquet", chunk_rows=10)
    assert [(chunk.start, chunk.stop, chunk.first_row) for chunk in chunks] == [(0, 10, 0), (10, 20, 10), (20, 25, 20)]
    located = [(position, where(), record["n"]) for chunk in chunks for position, where, record in located_records(chunk)]
    assert located[11] == (11, "t.parquet:12", 11)

    arrow = tmp_path / "t.arrow"
    table = pa.table({"n": list(range(25))})
    with pa.ipc.new_stream(str(arrow), table.schema) as writer:
        writer.write_table(table)
    assert count_records(arrow) == 25 and column_names(arrow) == ["n"]
    chunks = plan_chunks(str(arrow), "t.arrow", chunk_rows=10)
    assert [(chunk.start, chunk.stop) for chunk in chunks] == [(0, 10), (10, 20), (20, 25)]
    rows = [(where(), record["n"]) for position, where, record in located_records(chunks[2])]
    assert rows[0] == ("t.arrow:21", 20)
    assert FileChunk(**chunks[1].to_item()) == chunks[1]


def test_parquet_chunks_cut_inside_a_row_group_larger_than_a_chunk(tmp_path):
    one_group = _parquet(tmp_path / "one.parquet", rows=5_000, row_group_size=5_000)
    assert pq.ParquetFile(one_group).metadata.num_row_groups == 1
    chunks = plan_chunks(str(one_group), "one.parquet", chunk_rows=1_200)
    assert [(chunk.start, chunk.stop) for chunk in chunks] == [
        (0, 1000), (1000, 2000), (2000, 3000), (3000, 4000), (4000, 5000)]  # ceil(5000/1200) equal parts
    seen = [(position, where(), record["n"]) for chunk in chunks for position, where, record in located_records(chunk)]
    assert [n for _, _, n in seen] == list(range(5_000))  # every row once, in file order
    assert seen[2_345] == (2_345, "one.parquet:2346", 2_345)
    assert plan_chunks(str(one_group), "one.parquet", chunk_rows=1_200) == chunks  # the same cut again

    # Small groups are gathered whole, as before; a large group among them is cut on its own.
    mixed = tmp_path / "mixed.parquet"
    table = pa.table({"n": list(range(1_000))})
    with pq.ParquetWriter(mixed, table.schema) as writer:
        for start, stop in [(0, 30), (30, 60), (60, 90), (90, 700), (700, 730), (730, 1_000)]:
            writer.write_table(table.slice(start, stop - start))
    chunks = plan_chunks(str(mixed), "mixed.parquet", chunk_rows=100)
    assert [(chunk.start, chunk.stop) for chunk in chunks] == [
        (0, 90), (90, 177), (177, 264), (264, 351), (351, 438), (438, 525), (525, 612), (612, 700),
        (700, 730), (730, 820), (820, 910), (910, 1000)]
    assert [row["n"] for chunk in chunks for _, _, row in located_records(chunk)] == list(range(1_000))


def test_a_parquet_part_of_a_row_group_stops_decoding_at_its_last_row(tmp_path):
    path = _parquet(tmp_path / "one.parquet", rows=50_000, row_group_size=50_000)
    batches = list(iter_batches(path, 100, 20_000, batch_rows=8_192))
    assert [batch.num_rows for batch in batches] == [8_092, 8_192, 3_716]
    assert batches[0].column("n")[0].as_py() == 100 and batches[-1].column("n")[-1].as_py() == 20_099


def test_json_lines_chunks_hold_about_chunk_rows_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(_lines({"n": n, "text": "x" * (n % 7)} for n in range(10_000)))
    chunks = plan_chunks(str(path), "rows.jsonl", chunk_rows=1_000)
    counts = [sum(1 for _ in located_records(chunk)) for chunk in chunks]
    assert sum(counts) == 10_000 and 9 <= len(chunks) <= 11, counts
    assert all(900 <= count <= 1_100 for count in counts[:-1]) and counts[-1] <= 1_100, counts  # the last: the rest
    assert [record["n"] for chunk in chunks for _, _, record in located_records(chunk)] == list(range(10_000))
    # The byte cap still holds, and a chunk size below one is refused naming the file.
    assert len(plan_chunks(str(path), "rows.jsonl", chunk_bytes=4_096, chunk_rows=1_000)) > len(chunks)
    with pytest.raises(ValueError, match="rows.jsonl: chunk sizes must be positive"):
        plan_chunks(str(path), "rows.jsonl", chunk_rows=0)


def test_saved_datasets_are_read_split_by_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    single = datasets.Dataset.from_list(RECORDS)
    single.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": single, "test": single.select(range(2))}).save_to_disk(
        str(tmp_path / "dict"))
    assert is_saved_dataset(tmp_path / "single") and is_saved_dataset(tmp_path / "dict")
    assert not is_saved_dataset(tmp_path)
    assert saved_dataset_tables(tmp_path / "single")[None].to_pylist() == RECORDS
    splits = saved_dataset_tables(tmp_path / "dict")
    assert list(splits) == ["train", "test"]
    assert splits["test"].to_pylist() == RECORDS[:2]
