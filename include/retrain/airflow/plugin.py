"""The report views in the Airflow UI: each retraining run's report on its DAG run page, each model's
history on its DAG page, and the list of models under Browse.

A FastAPI app mounted at /retrain in the api-server serves pages rendered by `retrain.reports` from the
registry (local folder or S3). Airflow mounts plugin apps without authentication, so every route depends
on Airflow's own security dependencies: the caller must be logged in (a Bearer token, or the UI's session
cookie, which is what makes the pages work inside the UI) and may read only the DAGs the auth manager lets
them read. Nothing from the URL becomes a storage key: the DAG id must name a retraining DAG in the
metadata DB, whose serialized form names its model config, and a run id is looked up among that model's
ledger records. Registered through the package's `airflow.plugins` entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.responses import HTMLResponse

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from retrain.config import Config
    from retrain.records import LedgerRecord
    from retrain.registry import Registry

URL_PREFIX = "/retrain"
# A report is static: no script, no request anywhere; charts are data: images, styles inline.
PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"

DagId = Annotated[str, Path(max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$")]
RunId = Annotated[str, Path(max_length=250)]

app = FastAPI(title="retrain reports", docs_url=None, redoc_url=None, openapi_url=None)
can_read_runs = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-store"})


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


def _registry(dag_id: str, session: Session) -> Registry:
    from retrain.registry import Registry

    config = _config(dag_id, session)
    if config is None:
        raise HTTPException(status_code=404, detail=f"{dag_id} is not a retraining DAG of this deployment")
    return Registry.for_config(config)


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def run_report(dag_id: DagId, run_id: RunId, session: SessionDep) -> HTMLResponse:
    """The report of one run: its decision first, then drift, evaluation, importances, data."""
    from retrain.cycle.record import REPORT_FILE, stored_evidence
    from retrain.errors import NotFoundError
    from retrain.records import run_key
    from retrain.reports import render_run_report

    registry = _registry(dag_id, session)
    key = run_key(run_id)
    record = registry.find_run(key)
    if record is None or record.month is None:
        raise HTTPException(status_code=404, detail="no decision recorded for this run yet")
    folder = registry.run_folder(record.month, key)
    try:
        return _page(folder.read(REPORT_FILE).decode())
    except NotFoundError:
        return _page(render_run_report(record, *stored_evidence(folder, evaluated=record.metrics is not None)))


@app.get("/history/{dag_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def model_history(dag_id: DagId, session: SessionDep) -> HTMLResponse:
    """A model's history, each month linking to its run's report."""
    from retrain.reports import render_history

    registry = _registry(dag_id, session)
    champion = registry.champion()

    def link_for(record: LedgerRecord) -> str | None:
        if not record.is_cycle:
            return None
        return f"{URL_PREFIX}/runs/{quote(dag_id)}/{quote(record.run_id, safe='')}"

    return _page(
        render_history(
            registry.model_name, registry.ledger(), champion=champion.version if champion else None, link_for=link_for
        )
    )


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(requires_authenticated())])
def models(user: GetUserDep, session: SessionDep) -> HTMLResponse:
    """The fleet's models the caller may read, each linking to its history."""
    from airflow.api_fastapi.app import get_auth_manager
    from jinja2 import Environment, select_autoescape

    from retrain.fleet import DAG_PREFIX

    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    rows = []
    for dag_id in sorted(d for d in readable if d.startswith(DAG_PREFIX)):
        config = _config(dag_id, session)
        if config is not None:
            rows.append((config.model.name, f"{URL_PREFIX}/history/{quote(dag_id)}"))
    template = Environment(autoescape=select_autoescape(default_for_string=True)).from_string(INDEX)
    return _page(template.render(rows=rows))


INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Model histories</title>
<style>body { font-family: system-ui, sans-serif; margin: 1.5rem 2rem; } li { margin: .3rem 0; }</style></head>
<body><h1>Model histories</h1>{% if rows %}<ul>{% for name, link in rows %}<li><a href="{{ link }}">{{ name }}</a></li>
{% endfor %}</ul>{% else %}<p>No retraining model you may read.</p>{% endif %}</body></html>"""


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
            "name": "Model histories",
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
