"""DataLoader: every source format, the shared options, splitting/sampling, and error messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dsr_core.data import DataLoader, load_examples
from dsr_core.errors import DataError
from dsr_core.primitives import Example

ROWS: list[dict[str, Any]] = [
    {"question": "1+1?", "answer": "2", "topic": "math"},
    {"question": "capital of France?", "answer": "Paris", "topic": "geo"},
    {"question": "h2o?", "answer": "water", "topic": "chem"},
]


@pytest.fixture
def hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The datasets module, offline, with its cache inside tmp_path (its config is read at import time)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()
    return datasets


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def assert_rows(examples: list[Example], rows: list[dict[str, Any]], inputs: tuple[str, ...] = ("question",)) -> None:
    assert [ex.to_dict() for ex in examples] == rows
    assert all(ex.input_keys == frozenset(inputs) for ex in examples)


# -- formats ---------------------------------------------------------------------------------------------------
def test_csv_round_trip_keeps_strings_and_drops_bom(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('\ufeffquestion,answer,n\n"a, b","multi\nline",1\n', encoding="utf-8")
    examples = DataLoader().load(path, input_keys=["question"])
    assert_rows(examples, [{"question": "a, b", "answer": "multi\nline", "n": "1"}])
    assert examples[0].inputs().to_dict() == {"question": "a, b"}
    assert_rows(DataLoader().from_csv(write_csv(tmp_path / "b.csv", ROWS), input_keys=["question"]), ROWS)


def test_json_array_and_object_with_list(tmp_path: Path) -> None:
    rows = [{"question": "q", "answer": 3, "tags": ["x"], "extra": None}]
    array = tmp_path / "a.json"
    array.write_text(json.dumps(rows))
    wrapped = tmp_path / "b.json"
    wrapped.write_text(json.dumps({"version": 1, "data": rows}))
    assert_rows(DataLoader().load(array, input_keys=["question"]), rows)  # JSON types are kept
    assert_rows(DataLoader().from_json(wrapped, input_keys=["question"]), rows)


def test_jsonl_and_ndjson_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS[:2]) + "\n\n" + json.dumps(ROWS[2]) + "\n")
    assert_rows(DataLoader().load(path, input_keys=["question"]), ROWS)
    nd = write_jsonl(tmp_path / "d.ndjson", ROWS)
    assert_rows(DataLoader().from_jsonl(nd, input_keys=["question", "topic"]), ROWS, ("question", "topic"))


def test_parquet_round_trip(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**row, "n": i} for i, row in enumerate(ROWS)]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert_rows(DataLoader().load(path, input_keys=["question"]), rows)
    assert_rows(DataLoader().from_parquet(str(path), input_keys=["question"], limit=1), rows[:1])


def test_saved_dataset_folder(tmp_path: Path, hf: Any) -> None:
    folder = tmp_path / "saved"
    hf.Dataset.from_list(ROWS).save_to_disk(str(folder))
    assert_rows(DataLoader().load(folder, input_keys=["question"]), ROWS)
    assert_rows(load_examples(str(folder), input_keys=["question"], limit=2), ROWS[:2])
    with pytest.raises(DataError, match="split 'test' given, but the folder holds a single Dataset"):
        DataLoader().load(folder, input_keys=["question"], split="test")


def test_saved_dataset_dict_picks_split(tmp_path: Path, hf: Any) -> None:
    folder = tmp_path / "saved_dict"
    splits = {"train": hf.Dataset.from_list(ROWS[:2]), "test": hf.Dataset.from_list(ROWS[2:])}
    hf.DatasetDict(splits).save_to_disk(str(folder))
    assert_rows(DataLoader().load(folder, input_keys=["question"], split="test"), ROWS[2:])
    assert_rows(DataLoader().load(folder, input_keys=["question"], split="train"), ROWS[:2])
    with pytest.raises(DataError, match=r"no split 'dev'; available splits: \['test', 'train'\]") as err:
        DataLoader().load(folder, input_keys=["question"], split="dev")
    assert str(folder) in str(err.value)
    with pytest.raises(DataError, match="no split given"):
        DataLoader().load(folder, input_keys=["question"])


def test_huggingface_builder_with_data_files(tmp_path: Path, hf: Any) -> None:
    path = write_jsonl(tmp_path / "hf.jsonl", ROWS)
    loader = DataLoader()
    assert_rows(loader.from_huggingface("json", data_files=str(path), split="train", input_keys=["question"]), ROWS)
    # no split: the only split ("train") is used
    assert_rows(loader.from_huggingface("json", data_files=str(path), input_keys=["question"], limit=2), ROWS[:2])
    with pytest.raises(DataError, match=r"hf:json.*cannot load split 'test'"):
        loader.from_huggingface("json", data_files=str(path), split="test", input_keys=["question"])


def test_hf_prefix_dispatches_to_load_dataset(hf: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(name: str, config: str | None, **kwargs: Any) -> Any:
        calls.append((name, config, kwargs))
        return hf.Dataset.from_list(ROWS)

    monkeypatch.setattr(hf, "load_dataset", fake_load_dataset)
    examples = DataLoader().load("hf:org/qa", config="main", split="validation", input_keys=["question"])
    assert_rows(examples, ROWS)
    assert calls == [("org/qa", "main", {"split": "validation", "data_files": None})]


def test_memory_fsspec_url() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/dsr-test/data.csv", "wb") as f:
        f.write(b"question,answer\nq1,a1\nq2,a2\n")
    with fs.open("/dsr-test/data.jsonl", "wb") as f:
        f.write(b'{"question": "q1", "answer": 1}\n')
    try:
        rows = [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]
        assert_rows(DataLoader().load("memory://dsr-test/data.csv", input_keys=["question"]), rows)
        assert_rows(
            load_examples("memory://dsr-test/data.jsonl", input_keys=["question"]), [{"question": "q1", "answer": 1}]
        )
        with pytest.raises(DataError, match=r"memory://dsr-test/missing.csv: file not found"):
            DataLoader().load("memory://dsr-test/missing.csv", input_keys=["question"])
    finally:
        fs.rm("/dsr-test", recursive=True)


def test_from_records() -> None:
    assert_rows(DataLoader().from_records(ROWS, input_keys="question"), ROWS)  # a bare str is one key
    with pytest.raises(DataError, match=r"<records>, row 2: expected a mapping, got list"):
        DataLoader().from_records([ROWS[0], ["not", "a", "dict"]], input_keys=["question"])  # type: ignore[list-item]


def test_local_path_does_not_import_fsspec(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    code = (
        "import sys; from dsr_core.data import load_examples; "
        f"load_examples({str(path)!r}, input_keys=['question']); print('fsspec' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_module_import_is_light() -> None:
    code = "import sys, dsr_core.data; print(sorted({'pyarrow', 'datasets', 'fsspec', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- options ---------------------------------------------------------------------------------------------------
def test_rename_then_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [{"q": r["question"], "a": r["answer"], "t": r["topic"]} for r in ROWS])
    examples = DataLoader().load(
        path, input_keys=["question"], rename={"q": "question", "a": "answer"}, fields=["question", "answer"]
    )
    assert_rows(examples, [{"question": r["question"], "answer": r["answer"]} for r in ROWS])
    assert examples[0].labels().to_dict() == {"answer": "2"}


def test_fields_must_contain_input_keys_and_exist(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"input_keys \['question'\] are not among fields"):
        DataLoader().load(path, input_keys=["question"], fields=["answer"])
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question"], fields=["question", "nope"])
    assert str(err.value).startswith(f"{path}, row 1, column 'nope': column listed in fields is missing")


def test_limit_takes_first_rows_before_sampling(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "answer": i} for i in range(20)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert_rows(DataLoader().load(path, input_keys=["question"], limit=3), rows[:3])
    sampled = DataLoader().load(path, input_keys=["question"], limit=5, sample=5, seed=1)
    assert sorted(ex.answer for ex in sampled) == [0, 1, 2, 3, 4]
    assert DataLoader().load(path, input_keys=["question"], limit=0) == []
    with pytest.raises(ValueError, match="limit must be a non-negative int"):
        DataLoader().load(path, input_keys=["question"], limit=-1)


def test_limit_stops_before_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{broken\n")
    assert_rows(DataLoader().load(path, input_keys=["question"], limit=1), ROWS[:1])


def test_seeded_sampling_is_stable_and_seed_dependent(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}"} for i in range(50)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    first = DataLoader().load(path, input_keys=["question"], sample=10, seed=7)
    again = DataLoader().load(path, input_keys=["question"], sample=10, seed=7)
    other = DataLoader().load(path, input_keys=["question"], sample=10, seed=8)
    assert len(first) == 10 and first == again and first != other
    examples = DataLoader().from_records(rows, input_keys=["question"])
    assert DataLoader.sample(examples, 10, seed=7) == first
    assert DataLoader.sample(examples, 10, seed=7) != DataLoader.sample(examples, 10, seed=8)
    with pytest.raises(ValueError, match="cannot sample 51 examples from 50"):
        DataLoader.sample(examples, 51)


def test_sampling_is_stable_across_processes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}"} for i in range(50)])
    code = (
        "from dsr_core.data import load_examples; "
        f"print([e.question for e in load_examples({str(path)!r}, input_keys=['question'], sample=5, seed=3)])"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in "ab"
    }
    here = [e.question for e in load_examples(path, input_keys=["question"], sample=5, seed=3)]
    assert outs == {f"{here}\n"}


# -- train/dev split -------------------------------------------------------------------------------------------
def test_train_dev_split_sizes_and_determinism() -> None:
    examples = DataLoader().from_records([{"question": f"q{i}"} for i in range(10)], input_keys=["question"])
    train, dev = DataLoader.train_dev_split(examples, seed=1)
    assert (len(train), len(dev)) == (8, 2)
    assert sorted(e.question for e in train + dev) == sorted(e.question for e in examples)
    assert DataLoader.train_dev_split(examples, seed=1) == (train, dev)
    assert DataLoader.train_dev_split(examples, seed=2) != (train, dev)
    assert [len(part) for part in DataLoader.train_dev_split(examples, dev_size=0.3)] == [
        7,
        3,
    ]  # 10 * 0.3 == 3.0000000000000004
    assert [len(part) for part in DataLoader.train_dev_split(examples, dev_size=0.25)] == [7, 3]  # rounded up
    assert [len(part) for part in DataLoader.train_dev_split(examples, dev_size=4)] == [6, 4]
    train, dev = DataLoader.train_dev_split(examples, dev_size=3, shuffle=False)
    assert train == examples[:7] and dev == examples[7:]


@pytest.mark.parametrize("dev_size", [10, 11, 0.99])
def test_train_dev_split_needs_train_examples(dev_size: float) -> None:
    examples = DataLoader().from_records([{"question": f"q{i}"} for i in range(10)], input_keys=["question"])
    with pytest.raises(ValueError, match="leaves no train examples"):
        DataLoader.train_dev_split(examples, dev_size=dev_size)


@pytest.mark.parametrize("dev_size", [0.0, 1.0, -1, True, "0.2"])
def test_train_dev_split_rejects_bad_dev_size(dev_size: Any) -> None:
    with pytest.raises(ValueError, match="dev_size must be"):
        DataLoader.train_dev_split([Example(question="q")] * 5, dev_size=dev_size)


# -- errors ----------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="file not found") as err:
        DataLoader().load(path, input_keys=["question"])
    assert err.value.path == str(path) and str(err.value).startswith(str(path))


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    with pytest.raises(
        DataError, match=r"unknown extension '.xlsx'; supported: .csv, .json, .jsonl, .ndjson, .parquet"
    ):
        DataLoader().load(path, input_keys=["question"])


def test_folder_that_is_not_a_saved_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="save_to_disk") as err:
        DataLoader().load(tmp_path, input_keys=["question"])
    assert str(tmp_path) in str(err.value)


def test_split_on_a_plain_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split and config apply only"):
        DataLoader().load(write_jsonl(tmp_path / "d.jsonl", ROWS), input_keys=["question"], split="train")


def test_missing_input_key_csv_names_file_row_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [{"q": "x", "answer": "y"}])
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question"])
    assert str(err.value).startswith(f"{path}, row 1, column 'question': input column is missing")
    assert (err.value.row, err.value.column) == (1, "question")


def test_missing_input_key_jsonl_row_is_line_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], ROWS[1], {"answer": "no question"}])
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question", "answer"])
    assert str(err.value).startswith(f"{path}, row 3, column 'question': input column is missing")


def test_missing_input_key_after_rename_mentions_original(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "x"}, {"a": "y"}])
    with pytest.raises(DataError, match=r"row 2, column 'question': input column is missing \(renamed from 'q'\)"):
        DataLoader().load(path, input_keys=["question"], rename={"q": "question"})


def test_null_input_in_json_array(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([ROWS[0], {"question": None, "answer": "x"}]))
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question"])
    assert str(err.value).startswith(f"{path}, row 2, column 'question': input column is null")


def test_malformed_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"question": "x",}\n')
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question"])
    assert str(err.value).startswith(f"{path}, row 2: invalid JSON (column 18): Expecting property name")
    assert err.value.row == 2


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], [1, 2]])
    with pytest.raises(DataError, match=r"d\.jsonl, row 2: expected a JSON object, got list"):
        DataLoader().load(path, input_keys=["question"])


def test_malformed_json_file(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[\n  {"question": "x"},\n  {"question": }\n]')
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question"])
    assert str(err.value).startswith(f"{path}: invalid JSON at line 3, column 16: Expecting value")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"a": [], "b": []}, "exactly one list-valued key; found list-valued keys ['a', 'b']"),
        ("just a string", "expected a JSON array of objects, got str"),
        ([{"question": "x"}, 3], "row 2: expected a JSON object, got int"),
    ],
)
def test_json_with_the_wrong_shape(tmp_path: Path, doc: Any, message: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question"])
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_csv_row_with_wrong_cell_count(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("question,answer\nq1,a1\nq2,a2,extra\n")
    with pytest.raises(DataError) as err:
        DataLoader().load(path, input_keys=["question"])
    assert str(err.value) == f"{path}, row 2: expected 2 cells as in the header, got 3 (line 3)"


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="unreadable Parquet file") as err:
        DataLoader().load(path, input_keys=["question"])
    assert str(err.value).startswith(str(path))


def test_huggingface_missing_data_files(tmp_path: Path, hf: Any) -> None:
    with pytest.raises(DataError, match="hf:json: cannot load dataset"):
        DataLoader().from_huggingface("json", data_files=str(tmp_path / "nope.jsonl"), input_keys=["question"])


def test_input_keys_required() -> None:
    with pytest.raises(ValueError, match="input_keys must name at least one column"):
        DataLoader().from_records(ROWS, input_keys=[])
