# The official Airflow image plus this project's pinned requirements; the same requirements.txt and
# constraints.txt lock that `make install` and CI use.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/retrain/
RUN pip install --no-cache-dir -r /opt/retrain/requirements.txt -c /opt/retrain/constraints.txt
# The MLflow mirror's client, for models with an [mlflow] section:
#   docker compose build --build-arg RETRAIN_MLFLOW=true
ARG RETRAIN_MLFLOW=false
RUN if [ "$RETRAIN_MLFLOW" = "true" ]; then \
        pip install --no-cache-dir mlflow-skinny -c /opt/retrain/constraints.txt; \
    fi

# The engine is importable from include/ (compose also mounts these folders for live editing).
ENV PYTHONPATH=/opt/airflow/include
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 config/ /opt/airflow/retrain-config/
