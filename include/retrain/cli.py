"""The `retrain` command line. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from retrain.errors import RetrainError

if TYPE_CHECKING:
    from retrain.config import Config
    from retrain.cycle.pull import CheckedInputs
    from retrain.drift import DriftReport
    from retrain.records import LedgerRecord, MirrorState, PerformanceEstimate
    from retrain.registry import Registry

log = logging.getLogger("retrain")

EXIT_ERROR = 2
EXIT_INTERNAL = 1


def _drift(args: argparse.Namespace) -> int:
    from retrain.allocation import reuse_freed_memory
    from retrain.config import DriftSpec, load_config
    from retrain.drift import SnapshotColumns, detect_drift
    from retrain.snapshots import Schema, SnapshotReader, infer_schema, untested_columns

    if args.config:
        config = load_config(args.config)
        schema, spec, storage = Schema.for_model(config.model, labeled=False), config.drift, config.storage
    else:
        schema, spec, storage = None, DriftSpec(), None
    reuse_freed_memory()
    reference = SnapshotReader(args.reference, spec=storage)
    current = SnapshotReader(args.current, spec=storage)
    untested: dict[str, str] = {}
    if schema is None:
        columns = reference.arrow_schema()
        schema = infer_schema(columns)
        untested = untested_columns(columns, schema)
    # Each column is read once, validated as it is read (text in a number, infinities, mixed categorical
    # types); Parquet footers give the row counts, a CSV is counted by validating it.
    counted = ((reader, reader.row_count()) for reader in (reference, current))
    rows = tuple(count if count is not None else reader.scan(schema).rows for reader, count in counted)
    for reader, count in zip((reference, current), rows, strict=True):
        if count == 0:
            raise RetrainError(f"{reader.where}: empty snapshot (0 rows)")
    # Larger than drift.stream_above_rows, both sides are read in batches, as a cycle reads them.
    batch_rows = spec.batch_rows if max(rows) > spec.stream_above_rows else None
    report = detect_drift(
        SnapshotColumns([reference], batch_rows=batch_rows),
        SnapshotColumns([current], batch_rows=batch_rows),
        schema,
        spec,
        rows=rows,
        pictures=False,
    )
    for feature in report.features:
        for side, reader in (("reference", reference), ("current", current)):
            if getattr(feature, f"null_rate_{side}") == 1.0:
                raise RetrainError(f"{reader.where}: column {feature.name} is entirely null")
    if args.json:
        import json

        from retrain.serial import to_jsonable

        emit(json.dumps({**to_jsonable(report), "untested_columns": untested}, indent=2))
    else:
        print(format_drift_table(report))
        if untested:
            listed = ", ".join(f"{name} ({kind})" for name, kind in untested.items())
            print(f"not tested (no drift test for their type): {listed}")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_drift_table(report: DriftReport) -> str:
    header = (
        f"{'feature':<22} {'test':<5} {'statistic':>10} {'p-value':>10} {'p-adjusted':>10} "
        f"{'effect':>8} {'null ref->cur':>14}  drifted"
    )
    lines = [header, "-" * len(header)]
    for f in report.features:
        nulls = f"{f.null_rate_reference:.1%}->{f.null_rate_current:.1%}"
        lines.append(
            f"{f.name:<22} {f.test:<5} {_fmt(f.statistic, '10.4f')} {_fmt(f.p_value, '10.3g')} "
            f"{_fmt(f.p_adjusted, '10.3g')} {_fmt(f.effect, '8.4f')} {nulls:>14}  "
            f"{'YES' if f.drifted else 'no'}"
        )
    drifted = report.drifted_features
    verdict = "yes" if report.drifted else "no"
    detail = f"{len(drifted)} of {len(report.features)} features" + (f": {', '.join(drifted)}" if drifted else "")
    lines.append("")
    lines.append(
        f"dataset drift: {verdict} ({detail}; {report.correction} correction, alpha={report.alpha}, "
        f"{report.n_reference} reference rows, {report.n_current} current rows)"
    )
    return "\n".join(lines)


def _demo_data(args: argparse.Namespace) -> int:
    from retrain.demo_data import write_demo_data
    from retrain.months import is_month

    if args.months < 1:
        raise RetrainError("--months must be at least 1")
    if args.rows < 200:
        raise RetrainError("--rows must be at least 200")
    if not is_month(args.start):
        raise RetrainError(f"--start must be YYYY-MM, got {args.start!r}")
    if args.label_delay < 0:
        raise RetrainError("--label-delay must be >= 0")
    config_path = write_demo_data(
        args.out,
        months=args.months,
        start=args.start,
        rows=args.rows,
        seed=args.seed,
        label_delay=args.label_delay,
        name=args.name,
    )
    print(f"wrote {args.months} months of production and labeled snapshots under {args.out}")
    if config_path:
        print(f"config: {config_path}")
    else:
        print(
            f'config: set [data] production = "{args.out.rstrip("/")}/production" and '
            f'labeled = "{args.out.rstrip("/")}/labeled"'
        )
    return 0


def _load(args: argparse.Namespace) -> Config:
    from retrain.config import load_config

    config = load_config(args.config)
    overrides = {"drift.alpha": getattr(args, "alpha", None), "promotion.min_lift": getattr(args, "min_lift", None)}
    return config.with_overrides(**overrides)


def _cycle(args: argparse.Namespace) -> int:
    from retrain.cycle import run_cycle
    from retrain.cycle.record import summary
    from retrain.records import Run
    from retrain.serial import dumps

    config = _load(args)
    run_id = args.run_id or f"cli__{args.month}__{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
    entry = run_cycle(config, Run(run_id=run_id, month=args.month, force=args.force, dry_run=args.dry_run))
    emit(dumps(summary(entry)) if args.json else format_cycle(entry))
    return 0


def _check(args: argparse.Namespace) -> int:
    from retrain.cycle.pull import check_inputs
    from retrain.serial import dumps

    checked = check_inputs(_load(args), args.month)
    emit(dumps(checked) if args.json else format_check(checked))
    return 0


def format_check(checked: CheckedInputs) -> str:
    lines = [f"{checked.month}: the snapshots a run reads pass validation (nothing was written)"]
    for role, snapshot in [("production", checked.production), *(("labeled", s) for s in checked.labeled)]:
        files = len(snapshot.files)
        text = f"  {role:<10} {snapshot.month}: {files} file{'s' if files != 1 else ''}, {snapshot.rows:,} rows"
        if snapshot.classes:
            text += f" (labels {', '.join(f'{label}: {rows:,}' for label, rows in snapshot.classes.items())})"
        nulls = [f"{column} {rate:.1%}" for column, rate in snapshot.null_rates.items() if rate]
        text += f"; nulls: {', '.join(nulls) if nulls else 'none'}"
        lines.append(text)
    return "\n".join(lines)


def format_performance(performance: PerformanceEstimate | None) -> str:
    """The champion's estimated quality beside the value it was validated with and the value it realized."""
    if performance is None:
        return "-"
    text = (
        f"{performance.label} estimated {performance.estimated_value:.4f} (validated "
        f"{performance.validated_value:.4f} on {performance.validated_month})"
    )
    if performance.realized_value is not None:
        text += f", realized {performance.realized_value:.4f} on all of {performance.realized_month}"
    return text


def format_cycle(entry: LedgerRecord) -> str:
    """A cycle's decision and its evidence, for people."""
    metrics, drift, months, reference = entry.metrics, entry.drift, entry.months, entry.reference
    lines = [
        f"{entry.month}: {entry.outcome}{' (dry run)' if entry.dry_run else ''}",
        f"  reason:    {entry.reason}",
        f"  drift:     {'yes: ' + ', '.join(drift.drifted_features) if drift and drift.drifted else 'no'}",
    ]
    if reference:
        moved = f"; moved to {reference.moved_to}" if reference.moved else ""
        lines.append(f"  reference: {reference.mode}: {reference.source}{moved}")
    if months:
        lines.append(
            f"  months:    drift on production {months.production}; training {', '.join(months.training)}; "
            f"holdout {months.holdout}"
        )
    if entry.performance:
        lines.append(f"  champion estimate: {format_performance(entry.performance)}")
    if metrics and metrics.challenger:
        challenger = metrics.challenger
        scores = f"challenger {_number(challenger.score)}"
        if metrics.over_chance and challenger.metric == "roc_auc":
            scores += f" [{0.5 + metrics.over_chance.low:.4f}, {0.5 + metrics.over_chance.high:.4f}]"
        if metrics.champion:
            scores = f"champion {_number(metrics.champion.score)}, {scores}"
        lines.append(f"  {challenger.label}: {scores} (holdout of {months.holdout if months else entry.month})")
    if metrics and metrics.lift:
        lift = metrics.lift
        lines.append(f"  lift:      {lift.lift:+.4f} [{lift.low:+.4f}, {lift.high:+.4f}]")
    lines.append(f"  champion:  {entry.champion_version if entry.champion_version else 'none'}")
    if entry.approval:
        lines.append(f"  review:    {entry.approval.shown()}")
    if entry.report_uri:
        lines.append(f"  report:    {entry.report_uri}")
    return "\n".join(lines)


def _registry(args: argparse.Namespace) -> int:
    from retrain.registry import Registry
    from retrain.serial import dumps

    config = _load(args)
    registry = Registry.for_config(config)
    champion = registry.champion()
    if args.registry_command == "list":
        versions = registry.versions()
        if not versions:
            print(f"no versions in {registry.uri}")
        for version in versions:
            meta = registry.metadata(version)
            mark = "*" if champion and champion.version == version else " "
            print(
                f"{mark} {version:>4}  month {meta.data_month}  {meta.score_shown}  created {meta.created_at}  "
                f"run {meta.run_id}"
            )
    elif args.registry_command == "show":
        version = args.version if args.version is not None else (champion.version if champion else None)
        if version is None:
            raise RetrainError(f"{registry.uri}: no champion yet; name a version")
        emit(dumps(registry.metadata(version)))
    elif args.registry_command == "ledger":
        records = registry.ledger()
        if args.json:
            emit(dumps(records))
        else:
            print(format_ledger(records))
    elif args.registry_command == "rollback":
        entry = registry.rollback(args.version, reason=args.reason)
        print(f"champion is now version {entry.champion_version} (was {entry.champion_version_before})")
        if config.mlflow.tracking_uri is not None:
            _print_mirror(_mirror(config, registry), strict=False)
    elif args.registry_command in ("approve", "reject"):
        from retrain.cycle.approval import answer
        from retrain.cycle.record import summary

        entry = answer(
            config,
            args.month,
            args.run_id,
            by=args.by,
            comment=args.comment,
            approve=args.registry_command == "approve",
        )
        emit(dumps(summary(entry)) if args.json else format_cycle(entry))
    elif args.registry_command == "adopt":
        from retrain.adopt import adopt

        adopted = adopt(
            config,
            registry,
            model_source=args.model,
            metadata_file=args.metadata,
            month=args.month,
            replace=args.replace,
        )
        if args.json:
            emit(dumps(adopted.record))
        else:
            before = f" (was {adopted.champion_version_before})" if adopted.champion_version_before else ""
            print(f"champion is now version {adopted.version}{before}: {adopted.record.reason}")
        if config.mlflow.tracking_uri is not None:
            _print_mirror(_mirror(config, registry), strict=False)
    elif args.registry_command == "sync-mlflow":
        if config.mlflow.tracking_uri is None:
            raise RetrainError(f"{config.source}: no [mlflow] section: nothing to mirror to")
        _print_mirror(_mirror(config, registry), strict=True)
    return 0


def _mirror(config: Config, registry: Registry) -> MirrorState | None:
    from retrain.mlflow_mirror import sync

    return sync(config, registry)


def _print_mirror(result: MirrorState | None, *, strict: bool) -> None:
    """One line on MLflow's state; an unreachable MLflow is an error only when the mirror was the point."""
    if result is None:
        return
    if not result.synced:
        message = f"MLflow at {result.tracking_uri} not brought up to date: {result.error}"
        if strict:
            raise RetrainError(message)
        print(f"warning: {message}; run `retrain registry sync-mlflow` once it is back", file=sys.stderr)
        return
    if result.version is None:
        print(f"MLflow {result.registered_model}: no champion to mirror yet")
        return
    print(
        f"MLflow {result.registered_model}@{result.alias} -> version {result.version} "
        f"(registry version {result.champion})"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_ledger(records: list[LedgerRecord]) -> str:
    """One line per record. `labels` is the last labeled month the run used; `estimated` the champion's
    quality estimated on the production month (AUC, or a regressor's error), `realized` its realized value
    on the month its labels arrived (taken from the run that had them)."""
    if not records:
        return "ledger is empty"
    realized = {
        r.performance.realized_month: r.performance.realized_value
        for r in records
        if r.performance and r.performance.realized_month and r.performance.realized_value is not None
    }
    lines = [
        f"{'recorded at':<29} {'month':<8} {'labels':<8} {'reference':<9} {'estimated':>9} {'realized':>8} "
        f"{'outcome':<14} {'champion':>8} {'version':>7}  reason"
    ]
    for r in records:
        outcome = r.outcome + ("*" if r.dry_run else "")
        reference_text = ",".join(r.reference.months if r.reference else ()) or "-"
        if r.reference and r.reference.moved:
            reference_text += ">"
        estimated = r.performance.estimated_value if r.performance else None
        lines.append(
            f"{r.recorded_at:<29} {r.month or '-':<8} {r.months.labels_up_to if r.months else '-':<8} "
            f"{reference_text[:9]:<9} {_number(estimated):>9} "
            f"{_number(realized.get(r.month)):>8} {outcome:<14} "
            f"{r.champion_version or '-':>8} {r.version or '-':>7}  {r.reason}"
        )
    if any(r.dry_run for r in records):
        lines.append("* dry run: decided, nothing promoted")
    if any(r.reference and r.reference.moved for r in records):
        lines.append("> the run moved the drift reference to the month it validated the champion on")
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retrain.registry import Registry
    from retrain.reports import render_history

    config = _load(args)
    registry = Registry.for_config(config)
    out = Path(args.out)
    champion = registry.champion()

    def link_for(record: LedgerRecord) -> str | None:
        # A local registry's reports are files: link them relative to the page, so the folder can move.
        uri = record.report_uri
        if not uri or "://" in uri:
            return uri
        return os.path.relpath(uri, out.resolve().parent)

    page = render_history(
        config.model.name, registry.ledger(), champion=champion.version if champion else None, link_for=link_for
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote the history of {config.model.name} to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrain", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    drift = commands.add_parser("drift", help="drift report between two snapshots (a file or a month folder)")
    drift.add_argument("reference")
    drift.add_argument("current")
    drift.add_argument("--config", help="take feature types and thresholds from this config")
    drift.add_argument("--json", action="store_true", help="print the report as JSON")
    drift.set_defaults(handler=_drift)

    demo = commands.add_parser("demo-data", help="write synthetic monthly snapshots and a ready config")
    demo.add_argument("--out", required=True)
    demo.add_argument("--months", type=int, required=True)
    demo.add_argument("--start", default="2025-01")
    demo.add_argument("--rows", type=int, default=20000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--label-delay", type=int, default=0, help="labels lag production by this many months")
    demo.add_argument("--name", default="churn", help="model name in the written config")
    demo.set_defaults(handler=_demo_data)

    cycle = commands.add_parser("cycle", help="run one full retraining cycle for a month")
    cycle.add_argument("--config", required=True)
    cycle.add_argument("--month", required=True, help="YYYY-MM")
    cycle.add_argument("--force", action="store_true", help="retrain even without drift")
    cycle.add_argument("--dry-run", action="store_true", help="decide, record the decision, promote nothing")
    cycle.add_argument("--json", action="store_true")
    cycle.add_argument("--run-id", help="idempotency key; re-running the same id writes nothing twice")
    cycle.add_argument("--alpha", type=float, help="override drift.alpha for this run")
    cycle.add_argument("--min-lift", type=float, help="override promotion.min_lift for this run")
    cycle.set_defaults(handler=_cycle)

    check = commands.add_parser("check", help="validate the snapshots a month's run would read; writes nothing")
    check.add_argument("--config", required=True)
    check.add_argument("--month", required=True, help="YYYY-MM")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=_check)

    report = commands.add_parser("report", help="HTML reports")
    report_commands = report.add_subparsers(dest="report_command", required=True)
    history = report_commands.add_parser("history", help="a model's history: AUC, outcomes, drift, the ledger")
    history.add_argument("--config", required=True)
    history.add_argument("--out", required=True, help="the HTML file to write")
    history.set_defaults(handler=_report)

    registry = commands.add_parser("registry", help="inspect and operate the model registry")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    for name, help_text in (
        ("list", "versions, * marks the champion"),
        ("show", "a version's metadata"),
        ("ledger", "every cycle's decision, oldest first"),
        ("rollback", "make an earlier version the champion"),
        ("adopt", "make a model already in production the champion (a joblib or pickle file, or an MLflow URI)"),
        ("approve", "approve a promotion awaiting its reviewer ([approval] required)"),
        ("reject", "reject a promotion awaiting its reviewer: the champion stays"),
        ("sync-mlflow", "bring the MLflow Model Registry mirror up to date with the champion"),
    ):
        sub = registry_commands.add_parser(name, help=help_text)
        sub.add_argument("--config", required=True)
        if name == "show":
            sub.add_argument("version", nargs="?", type=int, help="default: the champion")
        if name == "ledger":
            sub.add_argument("--json", action="store_true")
        if name == "rollback":
            sub.add_argument("version", type=int)
            sub.add_argument("--reason", required=True)
        if name in ("approve", "reject"):
            sub.add_argument("--month", required=True, help="the run's month, YYYY-MM")
            sub.add_argument("--run-id", required=True, help="the run's id, as `retrain cycle` printed it")
            sub.add_argument("--by", required=True, help="the reviewer's name, kept in the ledger")
            sub.add_argument("--comment", help="why, kept in the ledger")
            sub.add_argument("--json", action="store_true")
        if name == "adopt":
            sub.add_argument(
                "--model", required=True, help="a joblib or pickle file (loading it runs its code), or models:/ runs:/"
            )
            sub.add_argument("--metadata", help="a JSON file of the model's own metadata, kept with the version")
            sub.add_argument("--month", help="the labeled month to measure it on (default: the last there is)")
            sub.add_argument("--replace", action="store_true", help="replace a champion already in place")
            sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=_registry)
    return parser


class _Results:
    """Where a command's result goes: stdout, which --json keeps for the JSON alone."""

    stream: TextIO | None = None


def emit(text: str) -> None:
    print(text, file=_Results.stream or sys.stdout)


def _handle(args: argparse.Namespace) -> int:
    if not getattr(args, "json", False):
        return args.handler(args)
    # Whatever a library prints (MLflow's "View run" lines, a progress message) goes to stderr: with
    # --json, stdout is the JSON document alone.
    _Results.stream = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return args.handler(args)
    finally:
        _Results.stream = None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _handle(args)
    except RetrainError as error:
        print(f"retrain: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("retrain: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if os.environ.get("RETRAIN_DEBUG"):
            raise
        print(
            f"retrain: internal error ({type(error).__name__}): {error}; set RETRAIN_DEBUG=1 for a traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
