from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from retrain.config import load_config, parse_config
from retrain.errors import ConfigError

MINIMAL = {
    "model": {"name": "churn", "target": "y", "numeric_features": ["a"], "categorical_features": ["c"]},
    "data": {"production": "prod", "labeled": "lab"},
    "registry": {"root": "s3://bucket/registry"},
}


def document(**changes: dict) -> dict:
    doc = {section: dict(values) for section, values in MINIMAL.items()}
    for section, values in changes.items():
        doc.setdefault(section, {}).update(values)
    return doc


def test_defaults_and_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = parse_config(document(), base=tmp_path)
    assert config.data.production == str(tmp_path / "prod")
    assert config.registry.root == "s3://bucket/registry"
    assert config.drift.alpha == 0.05 and config.drift.correction == "bonferroni"
    assert config.training.estimator == "hist_gradient_boosting"
    assert config.model.features == ("a", "c")
    assert (config.drift.reference, config.drift.max_estimated_auc_drop) == ("validated", None)
    assert (config.data.label_delay_months, config.data.success_marker) == (0, None)
    assert config.data.max_null_rate_by_feature == {}
    assert parse_config(document(data={"max_null_rate_by_feature": {"c": 1}})).data.max_null_rate_by_feature == {
        "c": 1.0
    }
    assert config.training.max_rows == 2_000_000 and config.airflow.schedule == "0 0 1 * *"
    assert config.airflow.start_month == "2000-01"
    assert not config.notify.enabled and config.notify.outcomes == ("PROMOTED", "REJECTED", "CONFLICT", "SUPERSEDED")
    assert config.mlflow.tracking_uri is None and config.mlflow.alias == "champion"


def test_the_model_configs_in_the_repository_load() -> None:
    configs = [load_config(p) for p in sorted((Path(__file__).resolve().parents[2] / "config").rglob("*.toml"))]
    assert {c.model.name for c in configs} == {"churn", "churn_eu", "home_prices", "churn_db"}
    assert {c.data.label_delay_months for c in configs} == {0, 1}
    (database,) = [c for c in configs if c.model.name == "churn_db"]
    assert database.data.production == "sql:retrain_demo.churn_db_production"
    assert database.storage.database.url == "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"drift": {"alpha": 1.5}}, "drift.alpha must be in (0, 1)"),
        ({"drift": {"alpha": "0.05"}}, "drift.alpha must be a number"),
        ({"drift": {"correction": "holm"}}, "drift.correction must be one of bonferroni, bh"),
        ({"drift": {"alpah": 0.1}}, "unknown key drift.alpah"),
        ({"training": {"estimator": "xgboost"}}, "training.estimator must be one of"),
        ({"training": {"window_months": 0}}, "training.window_months must be >= 1"),
        ({"training": {"seed": 1.5}}, "training.seed must be an integer"),
        ({"model": {"positive_label": 1}}, 'model.positive_label must be a non-empty string, got 1 (write "1")'),
        ({"model": {"positive_label": "Yes "}}, "model.positive_label 'Yes ' has spaces around it"),
        (
            {"promotion": {"require_significant_lift": "yes"}},
            "promotion.require_significant_lift must be true or false",
        ),
        ({"model": {"numeric_features": "a"}}, "model.numeric_features must be a list of column names"),
        ({"model": {"numeric_features": [], "categorical_features": []}}, "at least one of numeric_features"),
        ({"model": {"target": "a"}}, "column 'a' is listed twice"),
        ({"data": {"reference_month": "2025-13"}}, "data.reference_month must be YYYY-MM"),
        ({"data": {"partition": "year={year}"}}, "data.partition: name the month once"),
        ({"data": {"partition": "month={yyyy}-{mm}"}}, "data.partition: use only the placeholders"),
        ({"data": {"partition": "../month={month}"}}, "data.partition: must be a relative folder path"),
        ({"surprise": {"x": 1}}, "unknown section [surprise]"),
        ({"drift": {"reference": "training_window"}}, "drift.reference must be one of validated, training, fixed"),
        ({"drift": {"max_estimated_auc_drop": 1.5}}, "drift.max_estimated_auc_drop must be in [0, 1)"),
        ({"data": {"label_delay_months": -1}}, "data.label_delay_months must be >= 0"),
        ({"data": {"success_marker": "../_SUCCESS"}}, "data.success_marker must be a file name"),
        ({"data": {"wait_timeout_minutes": 0}}, "data.wait_timeout_minutes and data.wait_poke_seconds must be > 0"),
        ({"training": {"max_rows": 10}}, "training.max_rows must be 0 (every row) or >= 100"),
        ({"training": {"max_rows": -1}}, "training.max_rows must be 0 (every row) or >= 100"),
        ({"drift": {"batch_rows": 999}}, "drift.batch_rows must be >= 1000, got 999"),
        ({"drift": {"estimate_sample_rows": 10}}, "drift.estimate_sample_rows must be >= 1000"),
        ({"data": {"max_null_rate_by_feature": {"b": 0.9}}}, "names 'b', which is not a feature (features: a, c)"),
        ({"data": {"max_null_rate_by_feature": {"a": 1.5}}}, "data.max_null_rate_by_feature.a must be in (0, 1]"),
        ({"data": {"max_null_rate_by_feature": {"a": "90%"}}}, "data.max_null_rate_by_feature.a must be a number"),
        ({"data": {"max_null_rate_by_feature": 0.9}}, "data.max_null_rate_by_feature must be a table"),
        ({"airflow": {"schedule": "@monthly"}}, "airflow.schedule must be a 5-field cron expression"),
        ({"airflow": {"start_month": "2019-03-01"}}, "airflow.start_month must be YYYY-MM, got '2019-03-01'"),
        ({"airflow": {"owners": []}}, "airflow.owners must name at least one owner"),
        ({"notify": {"outcomes": ["PROMOTED", "PROMOTE"]}}, "notify.outcomes: unknown outcome 'PROMOTE'"),
        ({"notify": {"email_to": ["oncall"]}}, "notify: 'oncall' is not an e-mail address"),
        ({"mlflow": {"registered_model": "churn"}}, "[mlflow] needs mlflow.tracking_uri"),
        ({"mlflow": {"tracking_uri": "http://m", "max_retries": -1}}, "mlflow.max_retries must be >= 0"),
    ],
)
def test_bad_values_name_the_key(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        parse_config(document(**changes), source="retrain.toml")
    assert message in str(error.value)
    assert "retrain.toml" in str(error.value)


def test_missing_required_key_and_section() -> None:
    doc = document()
    del doc["model"]["target"]
    with pytest.raises(ConfigError, match="missing required key model.target"):
        parse_config(doc)
    doc = document()
    del doc["registry"]
    with pytest.raises(ConfigError, match=r"missing section \[registry\]"):
        parse_config(doc)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\nname = ")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML"):
        load_config(broken)


def test_overrides_replace_thresholds_and_are_validated() -> None:
    config = parse_config(document())
    changed = config.with_overrides(alpha=0.01, **{"promotion.min_lift": 0.02})
    assert changed.drift.alpha == 0.01 and changed.promotion.min_lift == 0.02
    assert config.drift.alpha == 0.05, "the original is frozen"
    assert config.with_overrides(alpha=None) == config
    with pytest.raises(ConfigError, match="drift.alpha must be in"):
        config.with_overrides(alpha=2.0)
    with pytest.raises(ConfigError, match="unknown override"):
        config.with_overrides(nonsense=1)


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ("", "data.production is a SQL source; [database] needs conn_id (an Airflow connection) or url"),
        ('[database]\nurl = "mysql://h/db"\n', "database.url must be a postgresql:// URL, got mysql://..."),
        ('[database]\nurl = "postgresql://u:hunter2@h/db"\n', "database.url holds a password: keep it out"),
        ('[database]\nurl = "postgresql://h/db"\nmonth_column = "month; drop"\n', "database.month_column must be"),
    ],
)
def test_a_sql_source_needs_a_database_without_a_password_in_the_file(database: str, message: str) -> None:
    document = tomllib.loads(
        '[model]\nname = "m"\ntarget = "y"\nnumeric_features = ["x"]\n'
        '[data]\nproduction = "sql:s.production"\nlabeled = "sql:SELECT * FROM s.labeled"\n'
        f'[registry]\nroot = "r"\n{database}'
    )
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        parse_config(document, source="m.toml")
    assert "hunter2" not in str(refused.value)
