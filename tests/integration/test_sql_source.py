"""Months read from PostgreSQL tables and queries through ADBC, against the machine's PostgreSQL: a whole
cycle that decides as the same months in files do, a month not loaded yet, a column of the wrong type, a
missing table, a failing query, and a fingerprint that follows the rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from retrain.config import load_config
from retrain.cycle import run_cycle
from retrain.cycle.window import missing_inputs
from retrain.errors import DataError, NotReadyError
from retrain.records import Run
from retrain.registry import Registry
from retrain.snapshots import sql
from tests.conftest import DEMO_MONTHS, DEMO_START, write_config
from tests.support.airflow_stack import POSTGRES, POSTGRES_SERVICE, require

pytestmark = [pytest.mark.slow, pytest.mark.services]

URL = f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/postgres"
LOADED = 7  # months loaded into the tables: the eighth is "not loaded yet"


def table_of(folder: Path, month: str, *, as_date: bool) -> pa.Table:
    table = pq.read_table(folder / f"month={month}").replace_schema_metadata(None)
    table = table.set_column(
        table.schema.get_field_index("event_time"),
        "event_time",
        pc.cast(table["event_time"], pa.timestamp("us", "UTC"), safe=False),
    )
    for name in ("plan", "region"):
        table = table.set_column(table.schema.get_field_index(name), name, pc.cast(table[name], pa.string()))
    if as_date:  # the labeled months by a date column, the production ones by YYYY-MM text
        year, number = map(int, month.split("-"))
        import datetime

        value = pa.array([datetime.date(year, number, 15)] * table.num_rows, pa.date32())
    else:
        value = pa.array([month] * table.num_rows, pa.string())
    return table.append_column("month", value)


@pytest.fixture(scope="module")
def schema(demo_source: Path) -> Iterator[str]:
    """A schema of its own holding the demo months as two tables: production (month as text) and labeled
    (month as a date)."""
    require(POSTGRES_SERVICE, "SQL sources are read from the local PostgreSQL")
    import adbc_driver_postgresql.dbapi as dbapi

    from retrain.months import shift_month

    name = f"retrain_{uuid.uuid4().hex[:8]}"
    months = [shift_month(DEMO_START, i) for i in range(LOADED)]
    with dbapi.connect(URL) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {name}")
        for role, as_date in (("production", False), ("labeled", True)):
            data = pa.concat_tables([table_of(demo_source / role, month, as_date=as_date) for month in months])
            cursor.adbc_ingest(role, data, mode="create", db_schema_name=name)
        connection.commit()
    yield name
    with dbapi.connect(URL) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA {name} CASCADE")
        connection.commit()


def execute(statement: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(URL) as connection, connection.cursor() as cursor:
        cursor.execute(statement)
        connection.commit()


def sql_config(tmp_path: Path, production: str, labeled: str, extra: str = "") -> Path:
    return write_config(
        tmp_path / "sql.toml",
        production=production,
        labeled=labeled,
        registry=str(tmp_path / "registry"),
        extra=f'\n[database]\nurl = "{URL}"\nmonth_column = "month"\n{extra}',
    )


def test_a_whole_cycle_from_tables_decides_as_the_same_months_in_files(
    schema: str, demo_source: Path, tmp_path: Path
) -> None:
    from_tables = load_config(sql_config(tmp_path, f"sql:{schema}.production", f"sql:{schema}.labeled"))
    files = tmp_path / "files"
    files.mkdir()
    from_files = load_config(
        write_config(
            files / "files.toml",
            production=str(demo_source / "production"),
            labeled=str(demo_source / "labeled"),
            registry=str(files / "registry"),
        )
    )
    for month in ("2025-01", "2025-02", "2025-07"):
        by_sql = run_cycle(from_tables, Run(run_id=f"sql-{month}", month=month))
        by_file = run_cycle(from_files, Run(run_id=f"file-{month}", month=month))
        assert by_sql.outcome == by_file.outcome, month
        if by_file.metrics and by_file.metrics.challenger:
            assert by_sql.metrics.challenger.score == pytest.approx(by_file.metrics.challenger.score, rel=1e-9)
        production = by_sql.snapshots.production
        assert production.uri == f"sql:{schema}.production" and production.rows == by_file.snapshots.production.rows
    assert [r.outcome for r in Registry.for_config(from_tables).ledger()] == ["BOOTSTRAPPED", "NO_DRIFT", "PROMOTED"]


def test_a_month_not_loaded_yet_waits_and_a_readiness_query_decides(schema: str, tmp_path: Path) -> None:
    from retrain.months import shift_month

    config = load_config(sql_config(tmp_path, f"sql:{schema}.production", f"sql:{schema}.labeled"))
    pending = shift_month(DEMO_START, LOADED)
    missing = missing_inputs(config, pending)
    assert missing and f"month {pending} (sql:{schema}.production): no rows yet" in missing[0]
    with pytest.raises(NotReadyError, match="no rows yet"):
        run_cycle(config, Run(run_id="early", month=pending))
    assert missing_inputs(config, DEMO_START) == []
    execute(f"CREATE TABLE {schema}.loads (month text, complete boolean)")
    execute(f"INSERT INTO {schema}.loads VALUES ('{DEMO_START}', false)")
    gated = load_config(
        sql_config(
            tmp_path,
            f"sql:{schema}.production",
            f"sql:{schema}.labeled",
            extra=f'readiness_query = "SELECT complete FROM {schema}.loads WHERE month = $1"',
        )
    )
    assert "the readiness query says not yet" in missing_inputs(gated, DEMO_START)[0]
    execute(f"UPDATE {schema}.loads SET complete = true")
    assert missing_inputs(gated, DEMO_START) == []
    assert not (tmp_path / "registry").exists(), "waiting writes nothing"


@pytest.mark.parametrize(
    ("production", "message"),
    [
        (
            "sql:{schema}.production_typo",
            "sql:{schema}.production_typo: the table {schema}.production_typo failed: "
            'relation "{schema}.production_typo" does not exist',
        ),
        (
            "sql:SELECT *, tenure_monthz FROM {schema}.production",
            'the query failed: column "tenure_monthz" does not exist',
        ),
        (
            "sql:SELECT month, customer_id, event_time, 'x' || tenure_months AS tenure_months, monthly_charges, "
            "support_calls, usage_gb, plan, region FROM {schema}.production",
            "FROM {schema}.production): column tenure_months is numeric but holds text (row 0: 'x",
        ),
    ],
    ids=["missing table", "query error", "wrong column type"],
)
def test_bad_sources_are_one_line_naming_table_or_query_month_and_column_and_write_nothing(
    schema: str, tmp_path: Path, production: str, message: str
) -> None:
    config = load_config(sql_config(tmp_path, production.format(schema=schema), f"sql:{schema}.labeled"))
    with pytest.raises(DataError) as refused:
        run_cycle(config, Run(run_id="bad", month=DEMO_START))
    text = str(refused.value)
    assert "\n" not in text and message.format(schema=schema) in text, text
    assert text.startswith(("sql:", "month 2025-01 (sql:")), "the table or query, and the month where one was read"
    registry = Registry.for_config(config)
    assert registry.store.list("") == [], "nothing written"


def test_the_fingerprint_follows_the_months_rows(schema: str, tmp_path: Path) -> None:
    config = load_config(sql_config(tmp_path, f"sql:{schema}.production", f"sql:{schema}.labeled"))
    database = config.storage.database
    execute(f"CREATE TABLE {schema}.copy AS SELECT * FROM {schema}.production")
    root = f"sql:{schema}.copy"
    before = sql.fingerprint(root, "2025-03", database)
    assert sql.fingerprint(root, "2025-03", database) == before, "the same rows, the same fingerprint"
    first = f"SELECT min(customer_id) FROM {schema}.copy WHERE month = '2025-03'"
    execute(f"UPDATE {schema}.copy SET usage_gb = usage_gb + 1 WHERE month = '2025-03' AND customer_id = ({first})")
    changed = sql.fingerprint(root, "2025-03", database)
    assert changed != before, "one value of one row changed"
    assert sql.fingerprint(root, "2025-04", database) == sql.fingerprint(f"sql:{schema}.copy", "2025-04", database)
    execute(f"ALTER TABLE {schema}.copy ADD COLUMN loaded_at timestamptz DEFAULT '2025-05-01'")
    by_load = replace(database, updated_column="loaded_at")
    stamped = sql.fingerprint(root, "2025-03", by_load)
    execute(f"UPDATE {schema}.copy SET loaded_at = '2025-06-01' WHERE month = '2025-03'")
    assert sql.fingerprint(root, "2025-03", by_load) != stamped, "a reload moves the update column's maximum"
    assert sorted(sql.list_months(root, database)) == [f"2025-0{i}" for i in range(1, LOADED + 1)]
    assert sql.list_months(f"sql:{schema}.labeled", database)[0] == DEMO_START, "a date column's months"
    assert DEMO_MONTHS > LOADED


def test_an_airflow_connection_names_the_database_and_its_password_is_written_nowhere(
    schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    password = "pg-Secret-5d1e"  # the local server trusts 127.0.0.1, so any password reaches it
    connection = {
        "conn_type": "postgres",
        "host": POSTGRES["host"],
        "port": POSTGRES["port"],
        "login": POSTGRES["user"],
        "password": password,
        "schema": "postgres",
    }
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(connection))
    path = write_config(
        tmp_path / "conn.toml",
        production=f"sql:{schema}.production",
        labeled=f"sql:{schema}.labeled",
        registry=str(tmp_path / "registry"),
        extra='\n[database]\nconn_id = "warehouse"\n',
    )
    config = load_config(path)
    with caplog.at_level("DEBUG", logger="retrain"):
        entry = run_cycle(config, Run(run_id="by-connection", month=DEMO_START))
    assert entry.outcome == "BOOTSTRAPPED"
    registry = Registry.for_config(config)
    left = [caplog.text, *(registry.store.read(key).decode(errors="replace") for key in registry.store.list(""))]
    assert not [text for text in left if password in text]
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({**connection, "host": "127.0.0.1", "port": 1}))
    with pytest.raises(Exception) as unreachable:
        sql.list_months(f"sql:{schema}.production", config.storage.database)
    assert "cannot connect to postgresql://postgres:***@127.0.0.1:1/postgres" in str(unreachable.value)
    assert password not in str(unreachable.value)
