"""How a task retries: storage outages are worth waiting out; bad data or config is not, as retrying
cannot fix it."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="retrain.errors.StorageError",
            action=RetryAction.RETRY,
            reason="storage unreachable; retrying with backoff",
        ),
        RetryRule(
            exception="retrain.errors.RetrainError",
            action=RetryAction.FAIL,
            reason="bad input or configuration; fix it and clear the task",
        ),
    ],
)

RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "retry_policy": RETRY_POLICY,
}
