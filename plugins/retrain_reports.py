"""The retraining report views (retrain.airflow.plugin) for a deployment that puts the package on its path
without installing it. An installed `retrain` registers them through its `airflow.plugins` entry point,
and Airflow would refuse this second registration, so this file then registers nothing."""

from retrain.airflow.plugin import RetrainReportsPlugin, registered_by_entry_point

if registered_by_entry_point():
    del RetrainReportsPlugin
