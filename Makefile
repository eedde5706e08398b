# Two commands for a new user: `make nightly` and `make test`. Everything else is set up on the way.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATE ?=
SIZE ?= S

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv nightly test test-spark-warehouse lint airflow generate backfill bench bench-sync train test-cluster lock clean clean-data docs ui \
	browser-deps up down status test-production test-production-stack backfill-airflow

help:
	@echo "make nightly [DATE=YYYY-MM-DD]  set up, generate demo data if the landing zone is empty, run the nightly job"
	@echo "             [TRACKING_FORMAT=…] the demo's tracking as a vendor's (segment, snowplow, ga4…; docs/tracking_vendors.md)"
	@echo "make test                       set up and run the test suite"
	@echo "make test-production            the production-stack tests (PostgreSQL, Airflow scheduler, MLflow server) and"
	@echo "                                three real nights under the scheduler vs make nightly (20-36 min)"
	@echo "make test-production-stack      only the stack's own tests (~7 min; CI runs them after make test)"
	@echo "make test-cluster               only the Spark standalone cluster test (starts and stops a local cluster)"
	@echo "make test-spark-warehouse       only the dbt project on DuckDB vs Spark SQL, table by table (~5 min)"
	@echo "make backfill FROM=… TO=…       run the nightly job for each date in order"
	@echo "make backfill-airflow FROM=… TO=…  the same through the running stack's scheduler (make up)"
	@echo "make bench [SIZE=S|M|L] [TRACKING_FORMAT=…]  benchmark the nightly run (results in bench/results/)"
	@echo "make bench-sync [DELTAS=100000] benchmark the destination sync against a local receiver"
	@echo "make airflow                    start the Airflow UI on http://127.0.0.1:8080"
	@echo "make ui [UI_PORT=8050]          start the segments page on http://127.0.0.1:8050 (docs/ui.md)"
	@echo "make browser-deps               install Debian's chromium + chromium-driver (the browser tests need them)"
	@echo "make up / down / status         the production-shaped stack: PostgreSQL, Airflow scheduler + api-server,"
	@echo "                                MLflow tracking server, all on 127.0.0.1 (docs/production.md)"
	@echo "make lint                       ruff"
	@echo "make clean-data                 delete data/ (landing zone, warehouse, MLflow store, exports)"

# (Re)create the virtualenv when it is missing or requirements.txt / pyproject.toml changed.
$(STAMP): requirements.txt pyproject.toml
	@# Spark ALS wants libblas.so.3/liblapack.so.3 (else a slower Java BLAS); optional, so never fatal.
	@ldconfig -p 2>/dev/null | grep -q liblapack.so.3 || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq libopenblas0 >/dev/null) || echo "note: libopenblas0 not installed; Spark ALS uses Java BLAS"; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

nightly: venv
	$(BIN)/c360 nightly $(if $(DATE),--date $(DATE)) $(if $(TRACKING_FORMAT),--tracking-format $(TRACKING_FORMAT))

backfill: venv
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	$(BIN)/c360 nightly --from $(FROM) --to $(TO)

test: venv browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Start a Spark standalone master + worker on 127.0.0.1, run only the `cluster` tests, stop it again (also on failure
# or Ctrl-C). `make test` runs them too (their fixture starts and stops the cluster itself).
# The dbt project built on DuckDB and on Spark SQL (dbt-spark, local session) from the same landed rows, compared
# table by table, with the feature-store and segment exports read from each (tests/test_spark_warehouse.py, #16).
# `make test` runs it too.
test-spark-warehouse: venv
	$(BIN)/python -m pytest -m spark_warehouse $(PYTEST_ARGS)

test-cluster: venv
	@trap 'infra/spark_standalone.sh stop' EXIT; trap 'exit 130' INT TERM; \
	  infra/spark_standalone.sh start && $(BIN)/python -m pytest -m cluster $(PYTEST_ARGS)

# The production-shaped stack on fresh data dirs (tests/test_production_stack.py, ~7 min): services healthy on
# 127.0.0.1 only, MLflow on PostgreSQL, a retry after S3 was unreachable, a backfill through Airflow; plus three real
# nights under the scheduler compared with `c360 nightly` (tests/test_production_nights.py, 20-36 min). Each module
# brings its stack down again, also on failure. Not part of `make test` (tests/conftest.py deselects them unless -m
# names them); CI runs test-production-stack after `make test`, the whole of test-production would pass its budget.
test-production: venv
	$(BIN)/python -m pytest -m production $(PYTEST_ARGS)

test-production-stack: venv
	$(BIN)/python -m pytest -m production tests/test_production_stack.py $(PYTEST_ARGS)

train: venv
	$(BIN)/c360 train $(if $(DATE),--as-of-date $(DATE)) $(TRAIN_ARGS)

bench: venv
	$(BIN)/c360 bench --size $(SIZE) $(if $(TRACKING_FORMAT),--tracking-format $(TRACKING_FORMAT))

# destination sync: 100k segment changes to a local receiver (docs/destinations.md); target <= 60 s
bench-sync: venv
	$(BIN)/python -m c360dev.bench.sync --deltas $(or $(DELTAS),100000)

lint: venv
	$(BIN)/ruff check .

airflow: venv
	$(BIN)/c360 airflow-ui

ui: venv
	$(BIN)/c360 ui $(if $(UI_PORT),--port $(UI_PORT))

# The browser tests (tests/test_ui_browser.py) drive Debian's chromium through Debian's chromedriver: a browser
# download at run time (Selenium Manager, Playwright) is impossible here. Installed only when missing.
browser-deps:
	@if command -v chromium >/dev/null && test -x /usr/bin/chromedriver; then echo "chromium and chromedriver present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	  && echo "installed chromium and chromium-driver"; \
	else echo "make browser-deps: run as root on Debian, or install chromium and chromium-driver yourself" >&2; exit 1; fi
# PostgreSQL + Airflow (scheduler, dag-processor, triggerer, api-server; LocalExecutor) + MLflow server.
# `make down` also cleans up after a failed `make up`.
up: venv
	infra/stack.sh up

down:
	infra/stack.sh down

status:
	infra/stack.sh status

# Backfill through the running stack's scheduler: one c360_ingest run per date, one at a time, oldest first;
# transform and score follow per date from the Asset events.
backfill-airflow:
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill-airflow FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	infra/stack.sh backfill $(FROM) $(TO)

generate: venv
	$(BIN)/c360 generate

lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv && .lockvenv/bin/pip install --quiet --upgrade pip
	.lockvenv/bin/pip install --quiet -r requirements.in
	{ echo "# Full lock of requirements.in, generated by 'make lock' (pip freeze of a fresh venv). Do not edit by hand."; \
	  .lockvenv/bin/pip freeze --exclude-editable; } > requirements.txt
	rm -rf .lockvenv

clean-data:
	rm -rf data .airflow

clean: clean-data
	rm -rf $(VENV)
