# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install test lint demo airflow bench mutate lock clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check include dags plugins tests bench scripts

# STORAGE=s3: data and registry on a local SeaweedFS that the demo (and then make airflow) starts and stops.
demo: install
	$(BIN)/python scripts/demo.py --dir $(DEMO_DIR) $(if $(STORAGE),--storage $(STORAGE))

AIRFLOW_PORT ?= 8080
airflow: install
	$(BIN)/python scripts/airflow_standalone.py --dir $(DEMO_DIR) --port $(AIRFLOW_PORT)

# The figures, dated and with the machine, go to $(BENCH_RESULTS) (empty: printed only).
BENCH_RESULTS ?= docs/benchmarks.md
bench: install
	$(BIN)/python bench/bench_engine.py $(if $(BENCH_RESULTS),--results $(BENCH_RESULTS))
	$(BIN)/python bench/bench_scale.py $(if $(BENCH_RESULTS),--results $(BENCH_RESULTS))
	$(BIN)/python bench/bench_sql.py $(if $(BENCH_RESULTS),--results $(BENCH_RESULTS))
	$(BIN)/python bench/bench_small.py $(if $(BENCH_RESULTS),--results $(BENCH_RESULTS))
	$(BIN)/python bench/bench_large.py $(if $(BENCH_RESULTS),--results $(BENCH_RESULTS))

# Mutation testing over the decision, drift, evaluation, registry, storage and notification modules
# (scripts/mutate.py; about half an hour, not part of CI). MUTATE_ARGS=--fresh forgets earlier results.
mutate: install
	$(BIN)/python scripts/mutate.py $(MUTATE_ARGS)

# Regenerate constraints.txt from a fresh resolve of requirements-dev.txt.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet pip==26.3
	.lock-venv/bin/python -m pip install --quiet -r requirements-dev.txt
	{ echo "# Lock file: every package of a resolved install of requirements-dev.txt on CPython 3.11."; \
	  echo "# Regenerate with 'make lock' after changing requirements*.txt."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache $(DEMO_DIR) .bench-data .mutmut
