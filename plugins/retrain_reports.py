"""Airflow plugin: each retraining run's report on its DAG run page, and each model's history, in the UI.

A FastAPI app mounted at /retrain serves pages rendered by the `retrain` engine from the registry (local
folder or S3). Airflow mounts plugin apps without authentication, so every route depends on Airflow's own
security dependencies: the caller must be logged in (a Bearer token, or the UI's session cookie, which is
what makes the pages work inside the UI) and may read only the DAGs the auth manager lets them read.
Nothing from the URL becomes a storage key: the DAG id must name a model of the fleet, and a run id is
looked up among that model's ledger records.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.responses import HTMLResponse

URL_PREFIX = "/retrain"
# A report is static: no script, no request anywhere; charts are data: images, styles inline.
PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"

DagId = Annotated[str, Path(max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$")]
RunId = Annotated[str, Path(max_length=250)]

app = FastAPI(title="retrain reports", docs_url=None, redoc_url=None, openapi_url=None)
can_read_runs = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-store"})


def _registry(dag_id: str):  # noqa: ANN202 - the engine's Registry, imported when a page is asked for
    from retrain.fleet import config_for_dag
    from retrain.registry import Registry

    config = config_for_dag(dag_id)
    if config is None:
        raise HTTPException(status_code=404, detail=f"{dag_id} is not a retraining DAG of this deployment")
    return Registry.for_config(config)


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def run_report(dag_id: DagId, run_id: RunId) -> HTMLResponse:
    """The report of one run: its decision first, then drift, evaluation, importances, data."""
    from retrain.errors import NotFoundError
    from retrain.registry import run_key
    from retrain.reports import render_run_report

    registry = _registry(dag_id)
    key = run_key(run_id)
    record = registry.find_run(key)
    if record is None:
        raise HTTPException(status_code=404, detail="no decision recorded for this run yet")
    try:
        return _page(registry.read_run_file(record["month"], key, "report.html").decode())
    except NotFoundError:
        drift = registry.read_run_json(record["month"], key, "drift.json")
        return _page(render_run_report(record, drift, registry.read_run_json(record["month"], key, "evaluation.json")))


@app.get("/history/{dag_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def model_history(dag_id: DagId) -> HTMLResponse:
    """A model's history, each month linking to its run's report."""
    from retrain.reports import render_history

    registry = _registry(dag_id)
    champion = registry.champion()

    def link_for(record: dict) -> str | None:
        if record.get("kind", "cycle") != "cycle":
            return None
        return f"{URL_PREFIX}/runs/{quote(dag_id)}/{quote(record['run_id'], safe='')}"

    return _page(
        render_history(
            registry.model_name, registry.ledger(), champion=champion.version if champion else None, link_for=link_for
        )
    )


@app.get("/", response_class=HTMLResponse, dependencies=[Depends(requires_authenticated())])
def models(user: GetUserDep) -> HTMLResponse:
    """The fleet's models the caller may read, each linking to its history."""
    from airflow.api_fastapi.app import get_auth_manager
    from jinja2 import Environment, select_autoescape

    from retrain.fleet import dag_id, loadable_configs

    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    rows = [
        (config.model.name, f"{URL_PREFIX}/history/{quote(dag_id(config.model.name))}")
        for config in loadable_configs()
        if dag_id(config.model.name) in readable
    ]
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
