"""Multiclass and regression models through whole cycles, on worlds with known answers: a lasting shift is
caught and a better challenger promoted, a worse one is kept, the estimate tracks the realized error, and
a model already in production is adopted from a joblib file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from retrain.adopt import adopt
from retrain.cli import main
from retrain.config import load_config
from retrain.cycle import run_cycle
from retrain.errors import ConfigError, DataError, RegistryError
from retrain.records import Outcome, Run
from retrain.registry import Registry

MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04"]
ROWS = 3000
CITY_EFFECT = {"north": 0.0, "south": 1.0, "east": -1.0}


def features(rng: np.random.Generator, rows: int, shifted: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": rng.normal(1.5 if shifted else 0.0, 1.0, rows),
            "age": rng.normal(0.0, 1.0, rows),
            "city": rng.choice(list(CITY_EFFECT), rows),
            "sold_at": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(rows), unit="min"),
        }
    )


def price_month(index: int, rows: int = ROWS) -> pd.DataFrame:
    """From the third month on, larger homes arrive and size lowers the price: a lasting change of both
    the features and their relation to the target."""
    rng = np.random.default_rng(100 + index)
    changed = index >= 2
    frame = features(rng, rows, shifted=changed)
    size_effect = -1.0 if changed else 3.0
    frame["price"] = (
        size_effect * frame["size"] + 2.0 * frame["age"] + frame["city"].map(CITY_EFFECT) + rng.normal(0, 1, rows)
    )
    return frame


def grade_month(index: int, rows: int = ROWS) -> pd.DataFrame:
    """Three risk grades from a softmax of the features; from the third month on, size points the other way."""
    rng = np.random.default_rng(200 + index)
    changed = index >= 2
    frame = features(rng, rows, shifted=changed)
    sign = -1.0 if changed else 1.0
    city = frame["city"].map(CITY_EFFECT).to_numpy()
    logits = np.stack(
        [np.zeros(rows), 2.0 * sign * frame["size"] + city, -2.0 * sign * frame["size"] + 1.5 * frame["age"]], axis=1
    )
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    draws = (rng.random(rows)[:, None] > probabilities.cumsum(axis=1)).sum(axis=1)
    frame["grade"] = np.array(["A", "B", "C"])[draws]
    return frame


def write_world(root: Path, make, months: list[str] = MONTHS) -> None:
    for index, month in enumerate(months):
        for dataset in ("production", "labeled"):
            folder = root / dataset / f"month={month}"
            folder.mkdir(parents=True)
            frame = make(index)
            if dataset == "production":
                frame = frame.drop(columns=[c for c in ("price", "grade") if c in frame])
            frame.to_parquet(folder / "part-0.parquet")


def config_file(root: Path, *, task: str, target: str, extra: str = "", training: str = "") -> Path:
    path = root / "model.toml"
    path.write_text(
        f"""
[model]
name = "{task}"
task = "{task}"
target = "{target}"
numeric_features = ["size", "age"]
categorical_features = ["city"]
timestamp = "sold_at"

[data]
production = "production"
labeled = "labeled"
reference_month = "2025-01"

[registry]
root = "registry"

[training]
window_months = 1
seed = 3
{training}

[promotion]
bootstrap_resamples = 300
{extra}
"""
    )
    return path


@pytest.fixture
def price_world(tmp_path: Path) -> Path:
    write_world(tmp_path, price_month)
    return tmp_path


@pytest.fixture
def grade_world(tmp_path: Path) -> Path:
    write_world(tmp_path, grade_month)
    return tmp_path


def test_a_regression_model_is_bootstrapped_kept_promoted_on_a_lasting_shift_and_its_error_estimated(
    price_world: Path,
) -> None:
    config = load_config(config_file(price_world, task="regression", target="price"))
    assert (config.promotion.metric, config.promotion.worst_allowed) == ("rmse", None)
    first = run_cycle(config, Run("first", "2025-01"))
    assert first.outcome == Outcome.BOOTSTRAPPED
    rmse = first.metrics.challenger.rmse
    assert first.metrics.challenger.metric == "rmse" and 0.9 < rmse < 1.5, "the noise's sd is 1"
    assert first.metrics.over_chance.lift > 2, "far better than predicting the mean"
    assert "first model, RMSE" in first.reason

    stable = run_cycle(config, Run("stable", "2025-02"))
    assert stable.outcome == Outcome.NO_DRIFT
    estimate = stable.performance
    assert (estimate.metric, estimate.calibration) == ("rmse", "direct loss estimation")
    # A stable month: the estimate before labels is within 10% of the error the labels then show.
    assert estimate.estimated_value == pytest.approx(estimate.realized_value, rel=0.1)
    assert estimate.estimated_value == pytest.approx(estimate.validated_value, rel=0.1)

    shifted = run_cycle(config, Run("shifted", "2025-03"))
    assert shifted.drift.drifted and "size" in shifted.drift.drifted_features
    assert shifted.outcome == Outcome.PROMOTED, shifted.reason
    champion, challenger = shifted.metrics.champion, shifted.metrics.challenger
    assert challenger.rmse < 0.5 * champion.rmse, "the old champion's size effect has the wrong sign"
    assert shifted.metrics.lift.lift == pytest.approx(champion.rmse - challenger.rmse, rel=1e-9)
    assert shifted.metrics.lift.low > 0, "a lower RMSE is a positive lift"
    assert "RMSE" in shifted.reason and "improvement" in shifted.reason

    # Forced in a settled world on a tenth of the rows: the challenger is worse, and the champion stays.
    starved = dataclasses.replace(config, training=dataclasses.replace(config.training, max_rows=100))
    worse = run_cycle(starved, Run("starved", "2025-04", force=True))
    assert worse.outcome == Outcome.KEPT_CHAMPION, worse.reason
    assert worse.metrics.challenger.rmse > worse.metrics.champion.rmse
    assert worse.metrics.lift.lift < 0 and worse.champion_version == shifted.champion_version

    report = (Path(worse.report_uri.removeprefix("file://"))).read_text()
    assert "RMSE (promotion metric)" in report and 'alt="predicted against actual"' in report
    assert 'alt="residuals"' in report


def test_a_regressors_estimated_error_rise_triggers_a_retrain(price_world: Path) -> None:
    """Larger homes arrive, beyond most of what the champion learned from: its trees predict flat there,
    and its errors on the largest homes of its validation month were already the largest. The loss model
    learned that, so the estimate sees the error rise before any label does."""
    config = load_config(config_file(price_world, task="regression", target="price"))
    limited = dataclasses.replace(
        config, drift=dataclasses.replace(config.drift, max_estimated_error_rise=0.05, min_ks_statistic=1.0)
    )
    run_cycle(limited, Run("first", "2025-01"))
    shifted = run_cycle(limited, Run("shifted", "2025-03"))
    assert not shifted.drift.drifted, "min_ks_statistic=1 lets no feature drift"
    assert "estimated_performance" in shifted.drift.triggers
    assert shifted.performance.estimated_drop > 0.05
    assert "drift.max_estimated_error_rise=0.05" in shifted.reason
    assert shifted.performance.realized_value > shifted.performance.validated_value + 0.05


def test_a_multiclass_model_with_its_own_estimator_is_promoted_on_a_lasting_shift(grade_world: Path) -> None:
    config = load_config(
        config_file(
            grade_world,
            task="multiclass",
            target="grade",
            training='estimator = "retrain.estimators:scaled_logistic_regression"\nparams = { C = 2.0 }',
        )
    )
    assert (config.promotion.metric, config.promotion.worst_allowed) == ("roc_auc_ovr_weighted", None)
    first = run_cycle(config, Run("first", "2025-01"))
    assert first.outcome == Outcome.BOOTSTRAPPED, first.reason
    assert first.metrics.challenger.auc > 0.75 and first.metrics.challenger.positives > 100
    model = Registry.for_config(config).load_model(1)
    assert type(model.named_steps["model"]).__name__ == "LogisticRegression" and model.named_steps["model"].C == 2.0

    stable = run_cycle(config, Run("stable", "2025-02"))
    assert stable.outcome == Outcome.NO_DRIFT
    assert stable.performance.metric == "roc_auc_ovr_weighted"
    assert stable.performance.estimated_value == pytest.approx(stable.performance.realized_value, abs=0.03)

    shifted = run_cycle(config, Run("shifted", "2025-03"))
    assert shifted.outcome == Outcome.PROMOTED, shifted.reason
    assert shifted.metrics.challenger.auc - shifted.metrics.champion.auc > 0.2
    # The relation itself changed: the estimate before labels cannot see that, and the labels do.
    estimate = shifted.performance
    assert abs(estimate.estimated_drop) < 0.05 and estimate.validated_value - estimate.realized_value > 0.2

    starved = dataclasses.replace(config, training=dataclasses.replace(config.training, max_rows=100))
    worse = run_cycle(starved, Run("starved", "2025-04", force=True))
    assert worse.outcome == Outcome.KEPT_CHAMPION, worse.reason
    report = Path(worse.report_uri.removeprefix("file://")).read_text()
    assert "confusion matrix of the champion" in report and "confusion matrix of the challenger" in report


def test_an_adopted_regressor_is_measured_and_challenged_by_the_first_cycle(price_world: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    config = load_config(config_file(price_world, task="regression", target="price"))
    history = pd.concat([price_month(0, 5000), price_month(1, 5000)])
    production_model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"), LinearRegression()
    ).fit(history[["size", "age", "city"]], history["price"])
    model_file = price_world / "model.joblib"
    joblib.dump(production_model, model_file)
    (price_world / "meta.json").write_text('{"owner": "pricing", "trained_on": "2024"}')
    registry = Registry.for_config(config)

    adopted = adopt(
        config, registry, model_source=str(model_file), metadata_file=str(price_world / "meta.json"), month="2025-02"
    )
    assert (adopted.version, adopted.champion_version_before) == (1, None)
    assert adopted.metrics.rmse == pytest.approx(1.0, abs=0.1), "the true model: what is left is the noise"
    metadata = registry.metadata(1)
    assert metadata.origin.metadata == {"owner": "pricing", "trained_on": "2024"}
    assert metadata.origin.source_sha256 == metadata.model_sha256, "the registry keeps the file's own bytes"
    champion = registry.champion()
    assert (champion.version, champion.validated_month) == (1, "2025-02")
    assert [r.kind for r in registry.ledger()] == ["adopt"]

    with pytest.raises(RegistryError, match="already the champion; adopt --replace"):
        adopt(config, registry, model_source=str(model_file))
    assert registry.versions() == [1], "a refused adoption writes nothing"

    shifted = run_cycle(config, Run("shifted", "2025-03"))
    assert shifted.champion_version_before == 1 and shifted.outcome == Outcome.PROMOTED, shifted.reason
    assert shifted.reference.months == ("2025-02",), "the adopted model's month is the drift reference"


def test_adopting_from_the_cli_checks_everything_before_writing(price_world: Path, capsys) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    config_path = config_file(price_world, task="regression", target="price")
    history = price_month(0, 500)
    wrong_columns = LinearRegression().fit(history[["size"]], history["price"])
    joblib.dump(wrong_columns, price_world / "narrow.joblib")
    assert main(["registry", "adopt", "--config", str(config_path), "--model", str(price_world / "narrow.joblib")]) == 2
    error = capsys.readouterr().err
    assert "the config lists age, city, which it was not fitted on" in error

    classifier = LogisticRegression().fit(history[["size", "age"]], history["price"] > 0)
    joblib.dump(classifier, price_world / "classifier.joblib")
    command = ["registry", "adopt", "--config", str(config_path), "--model"]
    assert main([*command, str(price_world / "classifier.joblib")]) == 2
    assert "model.task is regression, but this LogisticRegression is a classifier" in capsys.readouterr().err
    (price_world / "broken.joblib").write_bytes(b"not a pickle")
    assert main([*command, str(price_world / "broken.joblib")]) == 2
    assert "not a joblib or pickle file that loads here" in capsys.readouterr().err
    assert not (price_world / "registry" / "regression" / "versions").exists()


def test_an_adopted_classifier_must_know_every_class_of_the_month(grade_world: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    config = load_config(config_file(grade_world, task="multiclass", target="grade"))
    two = grade_month(0)
    two = two[two["grade"] != "C"]
    model = LogisticRegression().fit(two[["size", "age"]], two["grade"])
    model.feature_names_in_ = np.array(["size", "age", "city"], dtype=object)  # columns as the config lists them
    joblib.dump(model, grade_world / "two.joblib")
    with pytest.raises(
        DataError, match=r"the labels hold class 'C' that the model does not know \(its classes: A, B\)"
    ):
        adopt(config, Registry.for_config(config), model_source=str(grade_world / "two.joblib"), month="2025-01")
    assert Registry.for_config(config).versions() == []


@pytest.mark.parametrize(
    ("task", "target", "extra", "message"),
    [
        (
            "regression",
            "price",
            'metric = "roc_auc"',
            "promotion.metric 'roc_auc' does not fit model.task 'regression'",
        ),
        (
            "binary",
            "churned",
            'metric = "rmse"',
            "does not fit model.task 'binary' (use one of roc_auc, average_precision",
        ),
        ("regression", "price", "min_auc = 0.7", "promotion.min_auc is a floor on ROC AUC; promotion.metric is rmse"),
        ("multiclass", "grade", 'metric = "accuracy"', "promotion.metric must be one of roc_auc"),
    ],
)
def test_a_metric_that_does_not_fit_the_task_is_a_config_error(
    tmp_path: Path, task: str, target: str, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(config_file(tmp_path, task=task, target=target, extra=extra))


def test_a_multiclass_month_with_two_classes_and_a_text_regression_target_are_data_errors(tmp_path: Path) -> None:
    write_world(tmp_path, lambda i: grade_month(i).assign(grade=lambda f: f["grade"].replace("C", "B")), MONTHS[:1])
    config = load_config(config_file(tmp_path, task="multiclass", target="grade"))
    with pytest.raises(DataError, match=r"target column grade holds 2 classes \('A', 'B'\); model.task is multiclass"):
        run_cycle(config, Run("two", "2025-01"))
    assert not (tmp_path / "registry" / "multiclass" / "ledger").exists()

    other = tmp_path / "text"
    write_world(other, lambda i: price_month(i).assign(price="expensive"), MONTHS[:1])
    config = load_config(config_file(other, task="regression", target="price"))
    with pytest.raises(DataError, match=r"column price .*model.task is regression, whose target must be numeric"):
        run_cycle(config, Run("text", "2025-01"))


@pytest.mark.parametrize(
    ("estimator", "params", "message"),
    [
        ("no_such_module:make", "", "cannot import no_such_module"),
        ("retrain.estimators:nothing", "", "module retrain.estimators has no nothing"),
        ("retrain.tasks:TASKS", "", "TASKS is not callable"),
        (
            "sklearn.linear_model:LinearRegression",
            "",
            "returned a LinearRegression; model.task binary needs a classifier",
        ),
        (
            "retrain.estimators:scaled_logistic_regression",
            "params = { penalty = 3 }",
            "calling it with training.params failed",
        ),
    ],
)
def test_a_wrong_estimator_factory_is_a_config_error_naming_the_key(
    tmp_path: Path, estimator: str, params: str, message: str
) -> None:
    path = config_file(tmp_path, task="binary", target="churned", training=f'estimator = "{estimator}"\n{params}')
    with pytest.raises(ConfigError, match=rf"training.estimator '{estimator}'.*{message}"):
        load_config(path)


def test_a_validated_regressors_loss_model_is_kept_and_guarded_by_its_sha256(price_world: Path) -> None:
    """The run that validates a regressor fits its loss model once and keeps it; the months after read it
    (a changed file is refused, never unpickled) instead of fitting it again."""
    from retrain.errors import IntegrityError

    config = load_config(config_file(price_world, task="regression", target="price"))
    first = run_cycle(config, Run("first", "2025-01"))
    champion = Registry.for_config(config).champion()
    stored = json.loads((price_world / "registry" / "regression" / champion.validation_profile).read_text())
    assert stored["loss"]["metric"] == "rmse" and stored["loss"]["rows"] == first.metrics.challenger.rows
    assert stored["loss"]["validated"] == pytest.approx(first.metrics.challenger.rmse, rel=1e-12)
    loss_file = price_world / "registry" / "regression" / stored["loss"]["model_file"]
    kept = run_cycle(config, Run("kept", "2025-02"))
    assert kept.performance.validated_value == pytest.approx(first.metrics.challenger.rmse, rel=1e-12)
    loss_file.write_bytes(loss_file.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError, match="does not match the recorded"):
        run_cycle(config, Run("tampered", "2025-02"))
