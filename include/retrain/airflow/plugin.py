"""The report views in the Airflow UI: each retraining run's report on its DAG run page (or, for a run
with no decision, its state: running, failed and where, not found), each model's history on its DAG page,
and the fleet at a glance under Browse.

A FastAPI app mounted at /retrain in the api-server serves pages rendered by `retrain.reports` from the
registry (local folder or S3). Airflow mounts plugin apps without authentication, so every route depends
on Airflow's own security dependencies: the caller must be logged in (a Bearer token, or the UI's session
cookie, which is what makes the pages work inside the UI) and may read only the DAGs the auth manager lets
them read. Nothing from the URL becomes a storage key: the DAG id must name a retraining DAG in the
metadata DB, whose serialized form names its model config, and a run id is looked up among that model's
ledger records. Registered through the package's `airflow.plugins` entry point.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from retrain.config import Config
    from retrain.notify import TaskFailure
    from retrain.overview import RunFailure
    from retrain.records import LedgerRecord
    from retrain.registry import Registry

URL_PREFIX = "/retrain"
# A report is static: no script, no request anywhere; charts are data: images, styles inline.
PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
# A human-in-the-loop task waiting for its answer: parked in awaiting_input since Airflow 3.3, deferred before.
AWAITING_REVIEW = ("awaiting_input", "deferred")

DagId = Annotated[str, Path(max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$")]
RunId = Annotated[str, Path(max_length=250)]

app = FastAPI(title="retrain reports", docs_url=None, redoc_url=None, openapi_url=None)
can_read_runs = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))


@app.exception_handler(StarletteHTTPException)
async def short_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    headers = {**(error.headers or {}), **NOSNIFF, "Cache-Control": "no-store"}
    return JSONResponse({"detail": str(error.detail)[:200]}, status_code=error.status_code, headers=headers)


@app.exception_handler(RequestValidationError)
async def short_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """Which part of the address is wrong, never the value itself (an id may be 10,000 characters)."""
    fields = sorted({str(e["loc"][-1]) for e in error.errors() if e.get("loc")})
    detail = f"invalid {', '.join(fields) or 'request'}: too long or not allowed characters"
    return JSONResponse({"detail": detail}, status_code=422, headers={**NOSNIFF, "Cache-Control": "no-store"})


def _page(html: str, *, status_code: int = 200, script: bool = False) -> HTMLResponse:
    policy = PAGE_POLICY
    if script:
        from retrain.reports import top_navigation_hash

        policy = f"{PAGE_POLICY}; script-src {top_navigation_hash()}"
    headers = {"Content-Security-Policy": policy, "Cache-Control": "no-store", **NOSNIFF}
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _ui_base(request: Request) -> str:
    """The Airflow UI's root as this request reached it (behind a proxy's path prefix too)."""
    return str(request.scope.get("root_path", "")).removesuffix(URL_PREFIX)


def _config(dag_id: str, session: Session) -> Config | None:
    """The model config a retraining DAG was built from, as its serialized form records it."""
    from airflow.models.serialized_dag import SerializedDagModel

    from retrain.airflow.factory import CONFIG_ARG
    from retrain.config import load_config
    from retrain.errors import ConfigError

    dag = SerializedDagModel.get_dag(dag_id, session=session)
    path = (dag.default_args or {}).get(CONFIG_ARG) if dag is not None else None
    if not isinstance(path, str):
        return None
    try:
        return load_config(path)
    except ConfigError:
        return None


def _model(dag_id: str, session: Session) -> tuple[Config, Registry]:
    from retrain.registry import Registry

    config = _config(dag_id, session)
    if config is None:
        raise HTTPException(status_code=404, detail=f"{dag_id} is not a retraining DAG of this deployment")
    return config, Registry.for_config(config)


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def run_report(dag_id: DagId, run_id: RunId, request: Request, session: SessionDep) -> HTMLResponse:
    """The report of one run: its decision first, then drift, evaluation, importances, data. A run with no
    decision gets its state: running, failed (where and why) or not found."""
    from retrain.cycle.record import stored_evidence
    from retrain.records import run_key
    from retrain.reports import render_run_report

    config, registry = _model(dag_id, session)
    key = run_key(run_id)
    record = registry.find_run(key)
    if record is None or record.month is None:
        return _run_status(config, dag_id, run_id, _ui_base(request), session)
    folder = registry.run_folder(record.month, key)
    # Drawn when opened, not by the cycle: the stored copy charts only the drifted features (render_run_report).
    return _page(render_run_report(record, *stored_evidence(folder, evaluated=record.metrics is not None)))


def _state(value: object) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _failures(dag_id: str, run_id: str, session: Session) -> dict[str, TaskFailure]:
    """The failures a run's tasks kept as XCom (see retrain.airflow.notifications.remember_failure)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    from retrain.airflow.notifications import FAILURE_XCOM
    from retrain.notify import TaskFailure
    from retrain.serial import from_jsonable

    rows = session.execute(
        select(XComModel.task_id, XComModel.value).where(
            XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == FAILURE_XCOM
        )
    ).all()
    found = {}
    for task_id, value in rows:
        try:
            document = json.loads(value) if isinstance(value, str | bytes) else value
            found[task_id] = from_jsonable(TaskFailure, document)
        except (ValueError, TypeError, KeyError):
            continue  # a value this version cannot read: the page names the task without its error
    return found


def _run_status(config: Config, dag_id: str, run_id: str, ui_base: str, session: Session) -> HTMLResponse:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    from retrain.airflow.approval import APPROVAL_TASK
    from retrain.airflow.params import month_of
    from retrain.notify import task_log_link
    from retrain.reports import FailedTask, render_run_status

    model = config.model.name
    dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if dag_run is None:
        return _page(render_run_status(model, run_id, None), status_code=404, script=True)
    conf = dag_run.conf or {}
    month = month_of(conf.get("month"), dag_run.data_interval_start, dag_run.data_interval_end, dag_run.run_after)
    instances = session.execute(
        select(TaskInstance.task_id, TaskInstance.state, TaskInstance.try_number)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        .order_by(TaskInstance.start_date.is_(None), TaskInstance.start_date)
    ).all()
    state = _state(dag_run.state) or "queued"
    if state == "failed":
        noted = _failures(dag_id, run_id, session)
        failed = [
            FailedTask(
                task=task_id,
                try_number=noted[task_id].try_number if task_id in noted else try_number,
                error=noted[task_id].error if task_id in noted else None,
                log_link=task_log_link(ui_base, dag_id, run_id, task_id),
            )
            for task_id, task_state, try_number in instances
            if _state(task_state) == "failed"
        ]
        return _page(render_run_status(model, run_id, state, month=month, failed=failed), script=True)
    tasks = [(task_id, _state(task_state)) for task_id, task_state, _ in instances]
    waiting = any(task_id == APPROVAL_TASK and task_state in AWAITING_REVIEW for task_id, task_state in tasks)
    page = render_run_status(model, run_id, state, month=month, tasks=tasks, waiting_for_review=waiting)
    return _page(page, script=True)


@app.get("/history/{dag_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def model_history(dag_id: DagId, request: Request, session: SessionDep) -> HTMLResponse:
    """A model's history, each month linking to its run's report tab in the UI."""
    from retrain.notify import report_link
    from retrain.reports import render_history

    _, registry = _model(dag_id, session)
    champion = registry.champion()
    ui_base = _ui_base(request)

    def link_for(record: LedgerRecord) -> str | None:
        if not record.is_cycle:
            return None
        return report_link(ui_base, dag_id, record.run_id)

    page = render_history(
        registry.model_name,
        registry.ledger(),
        champion=champion.version if champion else None,
        link_for=link_for,
        top_navigation=True,
    )
    return _page(page, script=True)


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(requires_authenticated())])
def fleet(user: GetUserDep, request: Request, session: SessionDep) -> HTMLResponse:
    """The fleet's models the caller may read, one row each, those needing a person first."""
    from airflow.api_fastapi.app import get_auth_manager

    from retrain.fleet import DAG_PREFIX
    from retrain.notify import report_link
    from retrain.overview import model_status, ordered, with_scheduler
    from retrain.registry import Registry
    from retrain.reports import render_fleet

    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    dag_ids = sorted(d for d in readable if d.startswith(DAG_PREFIX))
    statuses = []
    failed_runs, awaiting = _scheduler_facts(dag_ids, session)
    for dag_id in dag_ids:
        config = _config(dag_id, session)
        if config is None:
            continue
        status = model_status(config, Registry.for_config(config), dag_id)
        statuses.append(
            with_scheduler(status, failure=failed_runs.get(dag_id), awaiting_approval=awaiting.get(dag_id, 0))
        )
    ui_base = _ui_base(request)
    page = render_fleet(
        ordered(statuses),
        history_link=lambda s: f"{ui_base}/dags/{quote(s.dag_id)}/plugin/retrain-history",
        report_link=lambda s: report_link(ui_base, s.dag_id, s.last_run_id or ""),
        failure_link=lambda s: report_link(ui_base, s.dag_id, s.failure.run_id if s.failure else ""),
    )
    return _page(page, script=True)


def _scheduler_facts(dag_ids: list[str], session: Session) -> tuple[dict[str, RunFailure], dict[str, int]]:
    """Per DAG, its latest failed run (and whether a run succeeded since) and its runs awaiting a reviewer:
    a few grouped queries for the whole fleet."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import func, select

    from retrain.airflow.approval import APPROVAL_TASK
    from retrain.overview import RunFailure

    if not dag_ids:
        return {}, {}
    ended = session.execute(
        select(DagRun.dag_id, DagRun.state, func.max(DagRun.end_date))
        .where(DagRun.dag_id.in_(dag_ids), DagRun.state.in_(["failed", "success"]))
        .group_by(DagRun.dag_id, DagRun.state)
    ).all()
    last = {(dag_id, _state(state)): at for dag_id, state, at in ended}
    failures: dict[str, RunFailure] = {}
    for dag_id in dag_ids:
        failed_at = last.get((dag_id, "failed"))
        if failed_at is None:
            continue
        run_id = session.scalar(
            select(DagRun.run_id).where(DagRun.dag_id == dag_id, DagRun.state == "failed", DagRun.end_date == failed_at)
        )
        tasks = session.scalars(
            select(TaskInstance.task_id).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.state == "failed"
            )
        ).all()
        succeeded_at = last.get((dag_id, "success"))
        failures[dag_id] = RunFailure(
            run_id=run_id or "",
            ended_at=failed_at.strftime("%Y-%m-%d %H:%M UTC"),
            tasks=tuple(sorted(tasks)),
            current=succeeded_at is None or succeeded_at < failed_at,
        )
    waiting = session.execute(
        select(TaskInstance.dag_id, func.count())
        .where(
            TaskInstance.dag_id.in_(dag_ids),
            TaskInstance.task_id == APPROVAL_TASK,
            TaskInstance.state.in_(AWAITING_REVIEW),
        )
        .group_by(TaskInstance.dag_id)
    ).all()
    return failures, {dag_id: count for dag_id, count in waiting}


class RetrainReportsPlugin(AirflowPlugin):
    name = "retrain_reports"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "retrain reports"}]
    external_views = [
        {
            "name": "Retraining report",
            "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "retrain-report",
        },
        {
            "name": "Model history",
            "href": f"{URL_PREFIX}/history/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "retrain-history",
        },
        {
            "name": "Retraining fleet",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "retrain-models",
        },
    ]


def registered_by_entry_point() -> bool:
    """Whether an installed distribution registers this plugin through the `airflow.plugins` entry point
    (Airflow then refuses a second registration from the plugins folder as a duplicate)."""
    from importlib.metadata import entry_points

    target = f"{__name__}:{RetrainReportsPlugin.__name__}"
    return any(point.value == target for point in entry_points(group="airflow.plugins"))
