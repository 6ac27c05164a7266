"""Load data files and datasets into Examples, and split or sample them reproducibly.

Sources: local ``.csv``, ``.json``, ``.jsonl``/``.ndjson`` and ``.parquet`` files, the same behind an fsspec
URL (``s3://b/x.jsonl``, ``memory://x.csv``), ``hf:NAME`` Hugging Face datasets, folders written by
``Dataset.save_to_disk``/``DatasetDict.save_to_disk``, and in-memory records. pyarrow, datasets and fsspec
are imported only by the loaders that need them, so ``import dsr_core`` stays fast.

Row numbers in errors are 1-based and count data records: in a CSV the header is line 1 and the first data
row is row 1 (blank lines are skipped; the physical line is also given for cell-count errors); in a JSON
array row N is its Nth element; in JSONL row N is line N of the file (blank lines are skipped but counted);
in Parquet, Hugging Face datasets and records row N is the Nth record. A ``.json`` file that does not parse
has no rows yet, so its error gives the line and column of the syntax error in the message instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import IO, TYPE_CHECKING, Any, Required, TypedDict

from .errors import DataError
from .primitives import Example

if TYPE_CHECKING:
    from typing import Unpack

Rows = Iterator[tuple[int, dict[str, Any]]]  # (1-based row number, record)
_SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


class LoadOptions(TypedDict, total=False):
    """The keyword options every loader takes (see ``DataLoader``)."""

    input_keys: Required[Sequence[str]]
    fields: Sequence[str] | None
    rename: Mapping[str, str] | None
    limit: int | None
    sample: int | None
    seed: int


def _open_binary(path: str) -> IO[bytes]:
    """Open a local path with ``open`` or a URL with fsspec; a missing file is a DataError naming it."""
    try:
        if "://" in path:
            import fsspec

            handle: IO[bytes] = fsspec.open(path, "rb").open()
            return handle
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot open file: {exc}", path=path) from exc


def _require_object(value: Any, path: str, row: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"expected a JSON object, got {type(value).__name__}", path=path, row=row)
    return value


def _read_csv(path: str) -> Rows:
    """Rows of a CSV with a header line; values stay strings and a BOM is dropped."""
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        row = 0
        try:
            header = next(reader, None)
            if header is None:
                return
            for cells in reader:
                if not cells:
                    continue
                row += 1
                if len(cells) != len(header):
                    got = f"got {len(cells)} (line {reader.line_num})"
                    raise DataError(f"expected {len(header)} cells as in the header, {got}", path=path, row=row)
                yield row, dict(zip(header, cells, strict=True))
        except UnicodeDecodeError as exc:
            raise DataError(f"not valid UTF-8 (after data row {row}): {exc}", path=path) from exc
        except csv.Error as exc:
            raise DataError(f"malformed CSV (line {reader.line_num}): {exc}", path=path, row=row + 1) from exc


def _read_json(path: str) -> Rows:
    """Rows of a JSON array of objects, or of an object holding exactly one list (``{"data": [...]}``)."""
    with _open_binary(path) as raw:
        data = raw.read()
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8: {exc}", path=path) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=path) from exc
    if isinstance(doc, dict):
        lists = [key for key, value in doc.items() if isinstance(value, list)]
        if len(lists) != 1:
            found = f"found list-valued keys {lists} among {list(doc)}"
            raise DataError(f"expected an array or an object with exactly one list-valued key; {found}", path=path)
        doc = doc[lists[0]]
    if not isinstance(doc, list):
        raise DataError(f"expected a JSON array of objects, got {type(doc).__name__}", path=path)
    for row, value in enumerate(doc, 1):
        yield row, _require_object(value, path, row)


def _read_jsonl(path: str) -> Rows:
    """One JSON object per line; the row number is the line number, blank lines are skipped."""
    with _open_binary(path) as raw:
        for row, line in enumerate(raw, 1):
            try:
                text = line.decode("utf-8-sig" if row == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not valid UTF-8: {exc}", path=path, row=row) from exc
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON (column {exc.colno}): {exc.msg}", path=path, row=row) from exc
            yield row, _require_object(value, path, row)


def _read_parquet(path: str) -> Rows:
    import pyarrow.parquet as pq

    with _open_binary(path) as raw:
        try:
            records = pq.read_table(raw).to_pylist()
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise DataError(f"unreadable Parquet file: {exc}", path=path) from exc
    yield from enumerate(records, 1)


_READERS: dict[str, Callable[[str], Rows]] = {".csv": _read_csv, ".json": _read_json, ".jsonl": _read_jsonl}
_READERS.update({".ndjson": _read_jsonl, ".parquet": _read_parquet})


def _pick_split(dataset: Any, split: str | None, where: str) -> Any:
    """Return ``dataset`` itself, or one split of a DatasetDict (the only one when ``split`` is None)."""
    from datasets import DatasetDict

    if not isinstance(dataset, DatasetDict):
        return dataset
    available = sorted(dataset)
    if split is None and len(available) == 1:
        return dataset[available[0]]
    if split not in dataset:
        wanted = "no split given" if split is None else f"no split {split!r}"
        raise DataError(f"{wanted}; available splits: {available}", path=where)
    return dataset[split]


def _dataset_rows(dataset: Any, limit: int | None) -> Rows:
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    yield from enumerate(dataset.to_list(), 1)


def _saved_dataset_rows(path: str, split: str | None, limit: int | None) -> Rows:
    if not any(os.path.exists(os.path.join(path, marker)) for marker in _SAVED_DATASET_MARKERS):
        markers = ", ".join(_SAVED_DATASET_MARKERS)
        raise DataError(f"a folder must be a dataset written by save_to_disk (none of {markers})", path=path)
    import datasets

    dataset = datasets.load_from_disk(path)
    if split is not None and not isinstance(dataset, datasets.DatasetDict):
        raise DataError(f"split {split!r} given, but the folder holds a single Dataset without splits", path=path)
    return _dataset_rows(_pick_split(dataset, split, path), limit)


def _check_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")


class DataLoader:
    """Turns files and datasets into ``Example`` lists with their input keys set.

    Every loader takes the same options: ``input_keys`` (required; column names after renaming),
    ``rename`` (old -> new, applied first), ``fields`` (columns to keep, after renaming; each must exist),
    ``limit`` (keep the first N rows, before sampling) and ``sample``/``seed`` (a seeded random sample).
    An input key that is absent or null in a row is a DataError naming the file, row and column.
    """

    def load(
        self,
        source: str | os.PathLike[str],
        *,
        input_keys: Sequence[str],
        fields: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
        limit: int | None = None,
        split: str | None = None,
        config: str | None = None,
        sample: int | None = None,
        seed: int = 0,
    ) -> list[Example]:
        """Load ``source``, choosing the reader from its ``hf:`` prefix, its folder layout or its extension."""
        opts = LoadOptions(input_keys=input_keys, fields=fields, rename=rename, limit=limit, sample=sample, seed=seed)
        path = os.fspath(source)
        if path.startswith("hf:"):
            return self.from_huggingface(path[3:], split=split, config=config, **opts)
        if "://" not in path and os.path.isdir(path):
            if config is not None:
                raise ValueError("config applies only to hf: sources")
            return self._finish(_saved_dataset_rows(path, split, limit), path, **opts)
        if split is not None or config is not None:
            raise ValueError("split and config apply only to hf: sources and save_to_disk folders")
        ext = os.path.splitext(path)[1].lower()
        if ext not in _READERS:
            supported = ", ".join(_READERS)
            raise DataError(f"unknown extension {ext or '(none)'!r}; supported: {supported}", path=path)
        return self._finish(_READERS[ext](path), path, **opts)

    def from_csv(self, path: str | os.PathLike[str], **options: Unpack[LoadOptions]) -> list[Example]:
        """Load a CSV with a header line; values stay strings."""
        return self._finish(_read_csv(os.fspath(path)), os.fspath(path), **options)

    def from_json(self, path: str | os.PathLike[str], **options: Unpack[LoadOptions]) -> list[Example]:
        """Load a JSON array of objects, or an object with one list-valued key; JSON types are kept."""
        return self._finish(_read_json(os.fspath(path)), os.fspath(path), **options)

    def from_jsonl(self, path: str | os.PathLike[str], **options: Unpack[LoadOptions]) -> list[Example]:
        """Load one JSON object per line; JSON types are kept."""
        return self._finish(_read_jsonl(os.fspath(path)), os.fspath(path), **options)

    def from_parquet(self, path: str | os.PathLike[str], **options: Unpack[LoadOptions]) -> list[Example]:
        """Load a Parquet file through pyarrow."""
        return self._finish(_read_parquet(os.fspath(path)), os.fspath(path), **options)

    def from_huggingface(
        self,
        name: str,
        *,
        split: str | None = None,
        config: str | None = None,
        data_files: str | Sequence[str] | Mapping[str, Any] | None = None,
        **options: Unpack[LoadOptions],
    ) -> list[Example]:
        """Load ``datasets.load_dataset(name, config, split=split, data_files=data_files)``.

        ``name`` may be a Hub dataset or a builder such as ``"json"``/``"csv"`` with ``data_files``. With no
        ``split`` a dataset that has exactly one split uses it; otherwise the error lists the splits.
        """
        import datasets

        where = f"hf:{name}"
        try:
            dataset = datasets.load_dataset(name, config, split=split, data_files=data_files)
        except (FileNotFoundError, ConnectionError) as exc:
            raise DataError(f"cannot load dataset: {exc}", path=where) from exc
        except ValueError as exc:
            if split is not None and "split" in str(exc).lower():
                raise DataError(f"cannot load split {split!r}: {exc}", path=where) from exc
            raise
        return self._finish(_dataset_rows(_pick_split(dataset, split, where), options.get("limit")), where, **options)

    def from_records(self, records: Iterable[Mapping[str, Any]], **options: Unpack[LoadOptions]) -> list[Example]:
        """Build Examples from in-memory mappings; a non-mapping record is a DataError."""

        def rows() -> Rows:
            for row, record in enumerate(records, 1):
                if not isinstance(record, Mapping):
                    raise DataError(f"expected a mapping, got {type(record).__name__}", path="<records>", row=row)
                yield row, dict(record)

        return self._finish(rows(), "<records>", **options)

    @staticmethod
    def _finish(
        rows: Rows,
        path: str,
        *,
        input_keys: Sequence[str],
        fields: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
        limit: int | None = None,
        sample: int | None = None,
        seed: int = 0,
    ) -> list[Example]:
        """Apply limit, rename, fields and input keys to ``rows``, then sample."""
        keys = (input_keys,) if isinstance(input_keys, str) else tuple(input_keys)
        if not keys:
            raise ValueError("input_keys must name at least one column")
        _check_count("limit", limit)
        _check_count("sample", sample)
        rename = dict(rename or {})
        renamed_from = {new: old for old, new in rename.items()}
        keep = list(fields) if fields is not None else None
        if keep is not None and not set(keys) <= set(keep):
            raise ValueError(f"input_keys {sorted(set(keys) - set(keep))} are not among fields {keep}")

        def origin(column: str) -> str:
            return f" (renamed from {renamed_from[column]!r})" if column in renamed_from else ""

        examples: list[Example] = []
        try:
            for row, record in rows if limit is None else islice(rows, limit):
                record = {rename.get(key, key): value for key, value in record.items()}
                if keep is not None:
                    absent = [column for column in keep if column not in record]
                    if absent:
                        message = f"column listed in fields is missing{origin(absent[0])}; row has {list(record)}"
                        raise DataError(message, path=path, row=row, column=absent[0])
                    record = {column: record[column] for column in keep}
                for key in keys:
                    if record.get(key) is None:
                        state = "null" if key in record else "missing"
                        message = f"input column is {state}{origin(key)}; row has {list(record)}"
                        raise DataError(message, path=path, row=row, column=key)
                examples.append(Example(record).with_inputs(*keys))
        finally:
            close = getattr(rows, "close", None)  # stops a reader early (limit, error) and closes its file
            if close is not None:
                close()
        return examples if sample is None else DataLoader.sample(examples, sample, seed=seed)

    @staticmethod
    def sample(examples: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
        """A random sample of ``n`` examples, the same for the same seed in every process."""
        _check_count("n", n)
        if n > len(examples):
            raise ValueError(f"cannot sample {n} examples from {len(examples)}")
        return random.Random(seed).sample(list(examples), n)

    @staticmethod
    def train_dev_split(
        examples: Sequence[Example], *, dev_size: float | int = 0.2, seed: int = 0, shuffle: bool = True
    ) -> tuple[list[Example], list[Example]]:
        """Split into (train, dev); ``dev_size`` is a fraction in (0, 1) (rounded up) or a count.

        Deterministic for a seed. Without ``shuffle`` the dev set is the tail of ``examples``.
        """
        items = list(examples)
        is_fraction = isinstance(dev_size, float) and 0 < dev_size < 1
        if not is_fraction and (isinstance(dev_size, bool) or not isinstance(dev_size, int) or dev_size < 0):
            raise ValueError(f"dev_size must be a fraction in (0, 1) or a non-negative int, got {dev_size!r}")
        n_dev = math.ceil(round(len(items) * dev_size, 9)) if is_fraction else int(dev_size)  # round: 10 * 0.3
        if n_dev >= len(items):
            raise ValueError(f"dev_size={dev_size} takes {n_dev} of {len(items)} examples and leaves no train examples")
        if shuffle:
            random.Random(seed).shuffle(items)
        cut = len(items) - n_dev
        return items[:cut], items[cut:]


def load_examples(source: str | os.PathLike[str], **kwargs: Any) -> list[Example]:
    """Shorthand for ``DataLoader().load(source, **kwargs)``."""
    return DataLoader().load(source, **kwargs)
