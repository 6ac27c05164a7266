"""What DSPy's Evaluate reports: the average metric in the log, the table it prints, the CSV and JSON files
it saves, and the progress bar while it runs."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .records import EvaluationResult, EvaluationRow

log = logging.getLogger(__package__)  # the name evaluation has always logged under


def report_result(
    result: EvaluationResult,
    name: str,
    *,
    display_table: bool | int = False,
    save_as_csv: str | None = None,
    save_as_json: str | None = None,
) -> None:
    """What DSPy's Evaluate reports at the end: the average metric in the log, and the table and files asked
    for (the score column named ``name``)."""
    if result.rows:
        total = sum(r.score for r in result.rows)
        log.info("Average Metric: %s / %s (%s%%)", total, result.n, round(100 * total / result.n, 1))
    if display_table or save_as_csv or save_as_json:
        records = results_output(result.results, name)
        if display_table:
            display_result_table(records, display_table, name)
        if save_as_csv:
            write_csv(records, save_as_csv)
        if save_as_json:
            write_json(records, save_as_json)


# -- DSPy's table and saved files -----------------------------------------------------------------------------------


def merge_dicts(example: Any, prediction: Any) -> dict[str, Any]:
    """DSPy's merge of an example and its prediction: a key in both becomes ``example_k`` and ``pred_k``."""
    first = example.to_dict() if hasattr(example, "to_dict") else dict(example)
    second = prediction.to_dict() if hasattr(prediction, "to_dict") else dict(prediction)
    merged: dict[str, Any] = {}
    for key, value in first.items():
        merged[f"example_{key}" if key in second else key] = value
    for key, value in second.items():
        merged[f"pred_{key}" if key in first else key] = value
    return merged


def results_output(results: Sequence[tuple[Any, Any, Any]], name: str) -> list[dict[str, Any]]:
    """One record per example as DSPy saves and displays it: example and prediction fields, then the score
    under the metric's name."""
    records = []
    for example, prediction, score in results:
        if hasattr(prediction, "items") and callable(prediction.items):
            records.append(merge_dicts(example, prediction) | {name: score})
        else:
            records.append(example.to_dict() | {"prediction": prediction, name: score})
    return records


def write_csv(records: list[dict[str, Any]], path: str) -> None:
    """``save_as_csv``: a header of every column (in order of first appearance), one row per example."""
    fieldnames = list(dict.fromkeys(key for record in records for key in record))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        for record in records:
            writer.writerow(record)


def write_json(records: list[dict[str, Any]], path: str) -> None:
    """``save_as_json``: a JSON list of the records (values that are not JSON, such as pydantic models, as
    their JSON form)."""
    from ..adapters.types import jsonable

    with open(path, "w") as handle:
        json.dump([{key: jsonable(value) for key, value in record.items()} for record in records], handle)


def _truncate_cell(content: Any) -> Any:
    """DSPy truncates every table cell to 25 words."""
    words = str(content).split()
    return " ".join(words[:25]) + "..." if len(words) > 25 else content


def _format_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"✔️ [{value:.3f}]"
    return f"✔️ [{value}]" if value is not None else ""


def display_result_table(records: list[dict[str, Any]], display_table: bool | int, name: str) -> None:
    """``display_table``: print the records as DSPy does (a pandas DataFrame, cells cut to 25 words, the score
    column as ``✔️ [score]``); a number shows that many rows and says how many were left out."""
    shown = records if isinstance(display_table, bool) else records[: int(display_table)]
    truncated = len(records) - len(shown)
    cells = [{key: _truncate_cell(value) for key, value in record.items()} for record in shown]
    for record in cells:
        record[name] = _format_metric(record.get(name))
    try:
        import pandas as pd
    except ImportError:
        _print_rich_table(cells)
    else:
        with pd.option_context("display.max_rows", None, "display.max_columns", None):
            print(pd.DataFrame(cells))
    if truncated > 0:
        print(f"... {truncated} more rows not displayed ...")


def _print_rich_table(cells: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = list(dict.fromkeys(key for record in cells for key in record))
    table = Table(*columns)
    for record in cells:
        table.add_row(*(str(record.get(column, "")) for column in columns))
    Console().print(table)


class _Progress:
    """A rich progress bar when asked for (or when stderr is a terminal); otherwise nothing."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._done = 0
        self._score = 0.0
        self._errors = 0

    @classmethod
    def start(cls, total: int, enabled: bool | None) -> _Progress:
        progress = cls()
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            progress._bar = Progress(
                TextColumn("evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("score {task.fields[score]:.1f}  errors {task.fields[errors]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            progress._task = progress._bar.add_task("evaluate", total=total, score=0.0, errors=0)
            progress._bar.start()
        return progress

    def advance(self, row: EvaluationRow) -> None:
        if self._bar is None:
            return
        self._done += 1
        self._score += row.score
        self._errors += row.error_type is not None
        self._bar.update(self._task, advance=1, score=100 * self._score / self._done, errors=self._errors)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
