"""The evaluation step: champion and challenger on the same holdout, the bootstrap of the lift, and the
decision on that evidence."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from retrain.cycle.estimate import write_validation_profile
from retrain.cycle.frames import holdout, known_classes, labels_of
from retrain.cycle.keep import why_not_held_up
from retrain.cycle.promote import newer_champion, superseded
from retrain.cycle.train import CHALLENGER_FILE
from retrain.decision import decide
from retrain.records import Evaluation, EvaluationDetails, EvaluationMetrics, Outcome
from retrain.serial import to_bytes, to_jsonable

if TYPE_CHECKING:
    import numpy as np

    from retrain.cycle.context import Cycle
    from retrain.records import DriftCheck, Pulled, Trained

EVALUATION_FILE = "evaluation.json"


def evaluate(cycle: Cycle, pulled: Pulled, drift: DriftCheck, trained: Trained) -> Evaluation:
    """Score champion and challenger on the same holdout, bootstrap the lift, and decide.

    The outcome is the decision unless the champion already holds newer data than this run (a backfill
    over history), when it is SUPERSEDED: the graph and the logs never say PROMOTED for a run that cannot.
    """
    from retrain.cycle.estimate import performance_drop
    from retrain.evaluation import chance_lift, lift_histogram, paired_bootstrap_lift, score_metrics, segment_checks
    from retrain.training import deserialize, permutation_importances, predict_scores

    config, registry, run = cycle.config, cycle.registry, cycle.run
    task, metric = config.model.task, config.promotion.judged_by.name
    rows = holdout(config, pulled.holdout)
    challenger_model = deserialize(cycle.folder.read(CHALLENGER_FILE), trained.model_sha256, source=trained.model_uri)
    champion_model = registry.load_model(pulled.champion.version) if pulled.champion is not None else None
    models = (challenger_model,) if champion_model is None else (challenger_model, champion_model)
    classes = known_classes(config, *pulled.labeled, models=models)
    labels = labels_of(config, rows, classes)
    challenger_scores = predict_scores(challenger_model, rows, config.model, classes)
    challenger = score_metrics(labels, challenger_scores, task=task, metric=metric, classes=classes)
    importances = permutation_importances(
        challenger_model, rows, config.model, config.training.seed, metric=metric, classes=classes
    )
    bootstrap = {
        "resamples": config.promotion.bootstrap_resamples,
        "confidence": config.promotion.confidence,
        "seed": config.training.seed,
        "metric": metric,
        "task": task,
    }
    champion = lift = over_chance = champion_scores = None
    segments: tuple = ()
    scored = {"challenger": challenger_scores}
    if champion_model is None:
        over_chance = chance_lift(labels, challenger_scores, **bootstrap)
    else:
        champion_scores = predict_scores(champion_model, rows, config.model, classes)
        champion = score_metrics(labels, champion_scores, task=task, metric=metric, classes=classes)
        scored = {"champion": champion_scores, **scored}
        lift = paired_bootstrap_lift(labels, champion_scores, challenger_scores, **bootstrap)
        if config.promotion.segments:
            segments = segment_checks(
                rows[list(config.promotion.segments)],
                labels,
                champion_scores,
                challenger_scores,
                policy=config.promotion,
                task=task,
            )
    decision = decide(
        drifted=drift.drifted,
        force=run.force,
        policy=config.promotion,
        challenger=challenger,
        champion=champion,
        lift=lift,
        drifted_features=drift.drifted_features,
        performance_drop=performance_drop(config, drift.performance),
        over_chance=over_chance,
        segments=segments,
    )
    outcome, reason = decision.outcome, decision.reason
    newer = newer_champion(registry.champion(), run)
    if decision.promotes and newer is not None:
        outcome, reason = Outcome.SUPERSEDED, superseded(reason, newer, run)
    metrics = EvaluationMetrics(
        challenger=challenger, champion=champion, lift=lift, over_chance=over_chance, segments=segments
    )
    result = Evaluation(
        decision=decision,
        outcome=outcome,
        reason=reason,
        metrics=metrics,
        holdout_month=pulled.labeled_month,
        evaluation_uri=cycle.folder.uri(EVALUATION_FILE),
    )
    validated = None
    if not run.dry_run and result.promotes:
        validated = (trained.model_sha256, challenger_scores)
    elif not run.dry_run and pulled.champion is not None and why_not_held_up(config, outcome, champion) is None:
        validated = (pulled.champion.model_sha256, champion_scores)
    if validated is not None:
        profile_key = write_validation_profile(cycle, pulled, *validated, labels, classes, rows)
        result = replace(result, validation_profile=profile_key)
    details = replace(
        task_details(task, labels, scored, classes, seed=config.training.seed),
        importances=importances,
        lift_histogram=lift_histogram(lift.samples) if lift is not None else None,
        metric=metric,
    )
    document = {**to_jsonable(result), "details": to_jsonable(details)}
    cycle.folder.write(EVALUATION_FILE, to_bytes(document))
    return result


def task_details(
    task: str, labels: np.ndarray, scored: dict[str, np.ndarray], classes: tuple[str, ...] | None, *, seed: int
) -> EvaluationDetails:
    """What the report charts of the models' predictions: ROC curves of a binary model; one ROC curve per
    class and a confusion matrix per model of a multiclass one; residuals of a regressor."""
    from retrain.evaluation import confusion_matrix, residuals, roc_points

    if task == "binary":
        return EvaluationDetails(roc={name: roc_points(labels, scores) for name, scores in scored.items()})
    if task == "regression":
        return EvaluationDetails(residuals={name: residuals(labels, p, seed=seed) for name, p in scored.items()})
    assert classes is not None
    curves = {
        f"challenger: {label}": roc_points(labels == k, scored["challenger"][:, k])
        for k, label in enumerate(classes)
        if 0 < (labels == k).sum() < len(labels)
    }
    return EvaluationDetails(
        roc=curves, confusion={name: confusion_matrix(labels, p, classes) for name, p in scored.items()}
    )
