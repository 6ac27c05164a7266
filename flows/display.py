"""Live progress and the final summaries for ``dsr evaluate`` and ``dsr optimize`` (rich, on stderr), and the
tables of ``dsr runs list/show`` and ``dsr monitor``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dsr_core.evaluate import EvaluationRow


class LiveLine:
    """One status line on stderr, redrawn in place while the ``with`` block runs (when ``live``)."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.console = Console(stderr=True)
        self.started = time.perf_counter()
        self._live: Live | None = None

    def __enter__(self) -> Any:
        if self.live:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def _render(self) -> Any:
        raise NotImplementedError


class EvaluationDisplay(LiveLine):
    """Examples done / failed, rate, running score. Fed by evaluate_shard's progress sink (any thread)."""

    def __init__(self, live: bool = True) -> None:
        super().__init__(live)
        self.total: int | None = None
        self.done = 0
        self.failed = 0
        self.score = 0.0
        self._lock = threading.Lock()  # rows arrive from several task threads; the display is not the hot path

    def on_start(self, total: int) -> None:
        self.total = total
        self.started = time.perf_counter()

    def on_row(self, row: EvaluationRow) -> None:
        with self._lock:
            self.done += 1
            self.failed += row.error_type is not None
            self.score += row.score
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        running = 100 * self.score / self.done if self.done else 0.0
        if self.total is None:
            return "starting: loading data, connecting to Prefect ..."
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (
            f"evaluating: {self.done}/{self.total} done, {self.failed} failed, {rate:.1f} examples/s, "
            f"ETA {eta:.0f}s, running score {running:.1f}"
        )

    def summary(self, report: Any) -> None:
        table = Table(title=f"dsr evaluate: {report.run_name}", show_header=False)
        rows = [
            ("score", f"{report.score:.2f}"),
            ("examples", str(report.n)),
            ("errors", f"{report.errors} ({100 * report.error_rate:.1f}%)"),
            ("LM calls", str(report.lm_calls)),
            ("cached", f"{100 * report.cached_fraction:.1f}%"),
            *(
                [("replayed", f"{report.replayed} examples from persisted shard results (no LM call)")]
                if getattr(report, "replayed", 0)
                else []
            ),
            ("tokens", f"{report.prompt_tokens} in / {report.completion_tokens} out"),
            ("cost", money(report.cost)),
            ("latency p50 / p95", f"{report.latency_p50:.3f}s / {report.latency_p95:.3f}s"),
            ("wall time", f"{report.wall_time:.1f}s in {report.shards} shards"),
            ("table", report.table_url),
            ("MLflow run", report.mlflow_run_id or "-"),
        ]
        for key, value in rows:
            table.add_row(key, value)
        Console().print(table)


def estimated_calls(report: Any) -> str:
    """``; estimated N`` when ``dsr optimize --estimate`` was run for this run before it started."""
    return f"; estimated {report.estimated_lm_calls}" if report.estimated_lm_calls is not None else ""


def estimated_cost(report: Any) -> str:
    if report.estimated_lm_calls is None:
        return ""
    return f" (estimated {money(report.estimated_cost)})" if report.estimated_cost is not None else ""


def estimated_tokens(report: Any) -> str:
    """``; estimated N in all`` beside the tokens (an estimate kept before tokens were carried has none)."""
    tokens = getattr(report, "estimated_tokens", None)
    return f"; estimated {tokens:,} in all" if tokens is not None else ""


def estimated_seconds(report: Any) -> str:
    seconds = getattr(report, "estimated_seconds", None)
    return f"; estimated {seconds:.0f}s" if seconds is not None else ""


def estimate_vs_actual(report: Any) -> Table | None:
    """The estimate's rows by phase beside what each phase spent (LM calls, tokens, wall time), when the run
    had an estimate; a phase on one side only shows ``-`` on the other."""
    estimated = {row["phase"]: row for row in getattr(report, "estimated_phases", None) or []}
    if not estimated:
        return None
    actual = getattr(report, "by_phase", None) or {}
    columns = ["phase", "LM calls", "est.", "tokens", "est.", "wall", "est."]
    rows = []
    for phase in [*estimated, *(p for p in actual if p not in estimated)]:
        est, act = estimated.get(phase, {}), actual.get(phase, {})
        rows.append(
            [
                phase,
                act.get("lm_calls"),
                est.get("lm_calls"),
                _thousands(act.get("tokens")),
                _thousands(est.get("tokens")),
                None if "seconds" not in act else f"{act['seconds']:.0f}s",
                None if "seconds" not in est else f"{est['seconds']:.0f}s",
            ]
        )
    return plain_table(columns, rows, right=set(columns) - {"phase"})


def _thousands(value: int | None) -> str | None:
    return None if value is None else f"{value:,}"


def role_cost(cost: float | None) -> str:
    """A role's cost in its row under ``cost`` (which says why one is unknown)."""
    return "cost unknown" if cost is None else money(cost)


def money(cost: float | None) -> str:
    """A cost in US dollars, or why there is none (an LM without prices: never a guess)."""
    if cost is None:
        return "unknown (set input_price/output_price, or gpu_hour_price with tokens_per_second, on the LM sections)"
    return f"${cost:,.4f}" if cost < 1 else f"${cost:,.2f}"


class OptimizationDisplay(LiveLine):
    """Phase, trial k of n, best score so far, LM calls and tokens; fed after every optimizer step.

    Redrawn in place on a terminal; otherwise (a log file, CI) one line per step."""

    def __init__(self) -> None:
        super().__init__(live=Console(stderr=True).is_terminal)
        self.info: dict[str, Any] = {}

    def on_step(self, info: dict[str, Any]) -> None:
        self.info = info
        if self._live is not None:
            self._live.update(self._render())
        else:
            self.console.print(self._render(), highlight=False, markup=False)

    def _render(self) -> Text:
        info = self.info
        if not info:
            return Text("starting: loading data, connecting to Prefect ...")
        planned = info.get("planned_trials")
        trials = f"trial {info['trials']} of {planned}" if planned else f"{info['trials']} trials"
        best = info.get("best_score")
        cost = "" if info.get("cost") is None else f", {money(info['cost'])}"
        return Text(
            f"optimizing [{info['phase']}]: {trials}, best {best if best is not None else '-'}, "
            f"{info['lm_calls']} LM calls ({info['cached_calls']} cached), {info['tokens']:,} tokens{cost}, "
            f"{time.perf_counter() - self.started:.0f}s"
        )

    def summary(self, report: Any) -> None:
        title = f"dsr optimize: {report.run_name}" + (" (already finished)" if report.already_finished else "")
        if report.stop_reason:
            title += f" ({report.status}: run it again with a higher cap to continue)"
        table = Table(title=title, show_header=False)
        rows = [
            ("optimizer", report.optimizer),
            (
                f"{report.eval_split} score",
                f"baseline {report.baseline_score:.2f} -> optimized {report.optimized_score:.2f} "
                f"({report.eval_examples} examples)",
            ),
            ("trials", f"{report.trials} in {report.steps} steps" + (" (resumed)" if report.resumed else "")),
            ("LM calls", f"{report.lm_calls} ({report.cached_calls} cached)" + estimated_calls(report)),
            ("tokens", f"{report.prompt_tokens} in / {report.completion_tokens} out" + estimated_tokens(report)),
            ("cost", money(report.cost) + estimated_cost(report)),
            *[
                (f"  {role}", f"{spent['lm_calls']} LM calls, {spent['tokens']:,} tokens, {role_cost(spent['cost'])}")
                for role, spent in report.by_role.items()
            ],
            *([("stopped", report.stop_reason)] if report.stop_reason else []),
            ("wall time", f"{report.wall_time:.1f}s" + estimated_seconds(report)),
            ("program", report.program_url),
            ("checkpoints", report.checkpoint_url),
            ("MLflow run", report.mlflow_run_id or "-"),
        ]
        if report.model_name:
            champion = "promoted to champion" if report.promoted else f"champion stays v{report.champion_version}"
            if report.champion_score is not None:
                champion += f" (previous champion scored {report.champion_score:.2f})"
            rows.append(("registered", f"{report.model_name} v{report.model_version} @candidate; {champion}"))
        for key, value in rows:
            table.add_row(key, value)
        Console().print(table)
        by_phase = estimate_vs_actual(report)
        if by_phase is not None:
            Console().print(Text("estimate vs actual, by phase (est.: dsr optimize --estimate):"))
            print_table(by_phase)
        if report.candidates:
            print_candidates(report.candidates, len("candidates:"))


# -- tables of the other commands -------------------------------------------------------------------------------

UNFOLDED_WIDTH = 10_000  # wider than any table: off a terminal a table is printed at its natural width


def print_table(table: Table) -> None:
    """Print ``table`` on stdout; off a terminal (a pipe, a log file) at its full width, so no cell is folded."""
    console = Console()
    if console.is_terminal:
        console.print(table)
        return
    wide = Console(width=UNFOLDED_WIDTH).measure(table).maximum
    unfolded = Console(width=max(console.width, wide))
    with unfolded.capture() as captured:
        unfolded.print(table)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))


def fields_table(rows: Iterable[tuple[str, Any]], key_width: int) -> Table:
    """``key value`` lines, the keys padded to ``key_width`` and one space, values as plain text."""
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(min_width=key_width, no_wrap=True)
    grid.add_column()
    for key, value in rows:
        grid.add_row(Text(key), Text(str(value)))
    return grid


def plain_table(columns: list[str], rows: Iterable[Iterable[Any]], *, right: set[str] = frozenset()) -> Table:
    """Columns two spaces apart under a header, no borders; ``right`` names the right-aligned columns."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left")
    for row in rows:
        table.add_row(*(Text("-" if value is None else str(value)) for value in row))
    return table


def runs_table(runs: list[dict[str, Any]]) -> Table:
    """``dsr runs list``: one row per run under a checkpoint location (damaged ones with their error)."""
    damaged = any(run["status"] == "damaged" for run in runs)
    columns = ["name", "status", "optimizer", "step", "trials", "best", *(["error"] if damaged else [])]
    rows = []
    for run in runs:
        if run["status"] == "damaged":
            rows.append([run["name"], "damaged", "", "", "", "", run["error"]])
        else:
            values = [run[key] for key in ("name", "status", "optimizer", "step", "trials", "best_score")]
            rows.append([*values, *([""] if damaged else [])])
    return plain_table(columns, rows, right={"step", "trials", "best"})


def trials_table(trials: list[dict[str, Any]]) -> Table:
    """``dsr runs show``: every trial of a run with the best score so far."""
    rows = (
        [f"#{t['trial']}", t["step"], t["kind"], t["split"], t["examples"], f"{t['score']:.2f}", t["best_so_far"]]
        for t in trials
    )
    return plain_table(["trial", "step", "kind", "split", "n", "score", "best"], rows, right={"step", "n", "score"})


def print_candidates(rows: list[dict[str, Any]], key_width: int) -> None:
    """The candidates of an optimizer that keeps a lineage: how many (and on the Pareto front), then the table
    (for Structural, the quality-vs-cost table)."""
    front = sum(bool(row["pareto"]) for row in rows)
    counts = f"{len(rows)}" + (f" ({front} on the Pareto front)" if front else "")
    print_table(fields_table([("candidates:", counts)], key_width))
    print_table(lineage_table(rows))


def lineage_table(rows: list[dict[str, Any]]) -> Table:
    """``dsr runs show``: every candidate of an optimizer that keeps a lineage (GEPA, SIMBA, Structural), with
    its parents, how it was made and its score; cost per example and the Pareto front where it has them."""
    costs = any(row["lm_calls"] is not None or row["tokens"] is not None for row in rows)
    latency = any(row.get("latency") is not None for row in rows)
    front = any(row["pareto"] is not None for row in rows)
    status = any(row["status"] is not None for row in rows)
    columns = [
        "candidate",
        "parents",
        "step",
        "origin",
        "score",
        "on",
        *(["calls/ex", "tokens/ex"] if costs else []),
        *(["s/ex"] if latency else []),
        *(["pareto"] if front else []),
        *(["status"] if status else []),
        "best",
    ]
    table_rows = []
    for row in rows:
        values = [
            f"#{row['candidate']}",
            ", ".join(f"#{p}" for p in row["parents"]) or None,
            row["step"],
            row["origin"],
            None if row["score"] is None else f"{row['score']:.2f}",
            row["scored_on"],
        ]
        if costs:
            values += [_number(row["lm_calls"]), _number(row["tokens"])]
        if latency:
            values.append(None if row.get("latency") is None else f"{row['latency']:.3f}")
        if front:
            values.append("yes" if row["pareto"] else "")
        if status:
            values.append(row["status"] or "")
        values.append("*" if row["best"] else "")
        table_rows.append(values)
    return plain_table(columns, table_rows, right={"step", "score", "calls/ex", "tokens/ex", "s/ex"})


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"
