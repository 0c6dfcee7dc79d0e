"""The training step: fit the challenger on the labeled window (minus the holdout) and park it in the run
folder, where evaluate and promote find it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.cycle.frames import frame, holdout_mask, schemas
from retrain.errors import DataError
from retrain.records import Trained

if TYPE_CHECKING:
    from retrain.cycle.context import Cycle
    from retrain.records import Pulled

CHALLENGER_FILE = "challenger.joblib"
# A few training rows, as the model takes them: the MLflow mirror's input example and signature.
INPUT_EXAMPLE_FILE = "input-example.json"
INPUT_EXAMPLE_ROWS = 5


def train_challenger(cycle: Cycle, pulled: Pulled) -> Trained:
    """Fit the challenger on the labeled window, the last month's holdout set aside."""
    import pandas as pd

    from retrain.training import serialize, stratified_sample, train

    config = cycle.config
    _, labeled_schema = schemas(config)
    # The older months serve training only: they are not kept past it. The last one holds the holdout.
    frames = [frame(config, snapshot, labeled_schema, keep=False) for snapshot in pulled.labeled[:-1]]
    current = frame(config, pulled.holdout, labeled_schema)
    mask = holdout_mask(config, current)
    frames.append(current[~mask])
    window = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    del frames
    target = config.model.target
    if config.model.task != "regression" and window[target].nunique() < 2:
        months = ", ".join(pulled.training_months)
        raise DataError(
            f"{config.data.labeled}: labeled months {months} hold a single class of {target} once the holdout "
            f"of {pulled.holdout.month} is set aside (its only row of the other class): nothing to train "
            "on; a longer training.window_months reaches months that hold both"
        )
    training = stratified_sample(
        window, target, config.training.max_rows or 0, config.training.seed, task=config.model.task
    )
    pipeline = train(training, config.model, config.training)
    model_bytes, sha256 = serialize(pipeline)
    uri = cycle.folder.write(CHALLENGER_FILE, model_bytes)
    features = [*config.model.numeric_features, *config.model.categorical_features]
    example = training[features].head(INPUT_EXAMPLE_ROWS).to_json(orient="split", index=False)
    cycle.folder.write(INPUT_EXAMPLE_FILE, example.encode())
    return Trained(
        model_uri=uri,
        model_sha256=sha256,
        estimator=config.training.estimator,
        train_rows=len(training),
        holdout_rows=int(mask.sum()),
        window_rows=len(window),
        max_rows=config.training.max_rows,
    )
