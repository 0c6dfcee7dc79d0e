"""The evaluation step: champion and challenger on the same holdout, the bootstrap of the lift, and the
decision on that evidence."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from retrain.cycle.estimate import write_validation_profile
from retrain.cycle.frames import holdout
from retrain.cycle.keep import why_not_held_up
from retrain.cycle.promote import newer_champion, superseded
from retrain.cycle.train import CHALLENGER_FILE
from retrain.decision import decide
from retrain.records import Evaluation, EvaluationDetails, EvaluationMetrics, Outcome
from retrain.serial import to_bytes, to_jsonable

if TYPE_CHECKING:
    from retrain.cycle.context import Cycle
    from retrain.records import DriftCheck, Pulled, Trained

EVALUATION_FILE = "evaluation.json"


def evaluate(cycle: Cycle, pulled: Pulled, drift: DriftCheck, trained: Trained) -> Evaluation:
    """Score champion and challenger on the same holdout, bootstrap the lift, and decide.

    The outcome is the decision unless the champion already holds newer data than this run (a backfill
    over history), when it is SUPERSEDED: the graph and the logs never say PROMOTED for a run that cannot.
    """
    from retrain.cycle.estimate import performance_drop
    from retrain.evaluation import chance_lift, lift_histogram, paired_bootstrap_lift, roc_points, score_metrics
    from retrain.training import deserialize, permutation_importances, predict_scores

    config, registry, run = cycle.config, cycle.registry, cycle.run
    rows = holdout(config, pulled.holdout)
    labels = rows[config.model.target].to_numpy().astype(int)
    challenger_model = deserialize(cycle.folder.read(CHALLENGER_FILE), trained.model_sha256, source=trained.model_uri)
    challenger_scores = predict_scores(challenger_model, rows, config.model)
    challenger = score_metrics(labels, challenger_scores)
    roc = {"challenger": roc_points(labels, challenger_scores)}
    importances = permutation_importances(challenger_model, rows, config.model, config.training.seed)
    bootstrap = {
        "resamples": config.promotion.bootstrap_resamples,
        "confidence": config.promotion.confidence,
        "seed": config.training.seed,
    }
    champion = lift = over_chance = champion_scores = None
    if pulled.champion is None:
        over_chance = chance_lift(labels, challenger_scores, **bootstrap)
    else:
        champion_scores = predict_scores(registry.load_model(pulled.champion.version), rows, config.model)
        champion = score_metrics(labels, champion_scores)
        roc["champion"] = roc_points(labels, champion_scores)
        lift = paired_bootstrap_lift(labels, champion_scores, challenger_scores, **bootstrap)
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
    )
    outcome, reason = decision.outcome, decision.reason
    newer = newer_champion(registry.champion(), run)
    if decision.promotes and newer is not None:
        outcome, reason = Outcome.SUPERSEDED, superseded(reason, newer, run)
    metrics = EvaluationMetrics(challenger=challenger, champion=champion, lift=lift, over_chance=over_chance)
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
        profile_key = write_validation_profile(cycle, pulled, *validated, labels)
        result = replace(result, validation_profile=profile_key)
    details = EvaluationDetails(
        roc=roc, importances=importances, lift_histogram=lift_histogram(lift.samples) if lift is not None else None
    )
    document = {**to_jsonable(result), "details": to_jsonable(details)}
    cycle.folder.write(EVALUATION_FILE, to_bytes(document))
    return result
