# Fresh machine: `make up` runs the whole thing on embedded defaults, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATE := .readmission
SHARED_DATA := $(abspath ../shared/data/dataset_diabetes.zip)
PORT ?= 3000
# The UCI data: $READMISSION_DATA, else the team's shared copy, else `readmission train` downloads it.
export READMISSION_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA))
export BENTOML_HOME ?= $(CURDIR)/$(STATE)/bentoml
# The MLflow store, and the service's prediction log (predictions.db)
export READMISSION_HOME ?= $(CURDIR)/$(STATE)
export BENTOML_DO_NOT_TRACK := true
# The service's gRPC port (8081) listens where its HTTP port does here: on loopback.
export READMISSION_GRPC_HOST ?= 127.0.0.1
# Prometheus's port (8082) too: `make up`'s Prometheus scrapes it there.
export READMISSION_METRICS_HOST ?= 127.0.0.1

.PHONY: venv lock up serve train import model-card build ui loadtest soak test test-unit lint format bench deploy oci oci-test prometheus \
  alertmanager alert-receiver audit clean nannyml

# Every version comes from uv.lock: constraints.txt is its export (all extras, sha256 of every file), installed in
# pip's hash-checking mode (pip itself included); then the project, editable, without dependencies.
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --requirement constraints.txt
	$(BIN)/pip install --quiet --no-deps --editable .
	touch $@

venv: $(BIN)/.installed

# NannyML, the reference of the estimates' tests (tests/unit/quality/test_estimates.py), in a venv of its own: it cannot
# install beside the project's xgboost-cpu (tests/reference/nannyml.in says why). Its pins and hashes:
# tests/reference/nannyml.txt, compiled from nannyml.in by the command at its top. The tests skip where it is absent.
NANNYML_VENV := .venv-nannyml
$(NANNYML_VENV)/.installed: tests/reference/nannyml.txt
	$(PYTHON) -m venv $(NANNYML_VENV)
	$(NANNYML_VENV)/bin/python -m pip install --quiet --require-hashes --requirement tests/reference/nannyml.txt
	touch $@

nannyml: $(NANNYML_VENV)/.installed

# Re-lock after a change to pyproject.toml's dependencies, keeping every locked version, and rewrite the files
# exported from uv.lock (constraints.txt, bento/, ui/ and loadtest/requirements.txt). A new version of a package:
# `make lock UPGRADE=name==version` (UPGRADE=name: its latest release; several: space-separated).
UPGRADE ?=
lock: venv
	$(BIN)/python .ci/lock.py $(foreach package,$(UPGRADE),--upgrade $(package))

# Each step leaves a stamp, so `make up` retrains, re-imports or rebuilds only what changed.
$(STATE)/trained.stamp: $(BIN)/.installed $(wildcard training/*.py) $(wildcard bento/features/*.py) bento/quality/drift.py
	$(BIN)/readmission train
	touch $@

$(STATE)/imported.stamp: $(STATE)/trained.stamp
	$(BIN)/readmission import
	touch $@

$(STATE)/built.stamp: $(STATE)/imported.stamp $(wildcard bento/*.py bento/*/*.py) bento/requirements.txt bentofile.yaml
	$(BIN)/bentoml build
	touch $@

train:
	rm -f $(STATE)/trained.stamp && $(MAKE) $(STATE)/trained.stamp

import: $(STATE)/imported.stamp

# The released champion's card (docs/model-card.md, what the UI shows) from the one `readmission train` wrote last.
model-card: $(STATE)/trained.stamp
	cp $(READMISSION_HOME)/model-card.md docs/model-card.md

build: $(STATE)/built.stamp

serve: build
	$(BIN)/bentoml serve readmission:latest --host 127.0.0.1 --port $(PORT)

# The service, with a local Prometheus beside it on 127.0.0.1 when the binary is installed, scraping the
# service's metrics port (READMISSION_METRICS_PORT), and the Alertmanager it sends its alerts to when Debian's
# prometheus-alertmanager is installed; Alertmanager's webhooks post to ALERTMANAGER_WEBHOOK_URL
# (default http://127.0.0.1:5001: `make alert-receiver` prints them).
PROMETHEUS_PORT ?= 9090
ALERTMANAGER_PORT ?= 9093
METRICS_PORT ?= $(or $(READMISSION_METRICS_PORT),8082)
MONITORING_PORTS := METRICS_PORT=$(METRICS_PORT) PROMETHEUS_PORT=$(PROMETHEUS_PORT) ALERTMANAGER_PORT=$(ALERTMANAGER_PORT)
up: build
	$(MONITORING_PORTS) bash observability/run_prometheus.sh \
	  $(BIN)/bentoml serve readmission:latest --host 127.0.0.1 --port $(PORT)

prometheus:
	$(MONITORING_PORTS) bash observability/run_prometheus.sh

alertmanager:
	ALERTMANAGER_PORT=$(ALERTMANAGER_PORT) bash observability/run_alertmanager.sh

alert-receiver: venv
	$(BIN)/python -m observability.alert_receiver

UI_PORT ?= 8501
ui: venv
	READMISSION_API_URL=$${READMISSION_API_URL:-http://127.0.0.1:$(PORT)} $(BIN)/streamlit run ui/app.py \
	  --server.port $(UI_PORT) --server.address 127.0.0.1 --server.headless true \
	  --browser.gatherUsageStats false --client.toolbarMode viewer

loadtest: venv
	$(BIN)/python loadtest/run.py --host http://127.0.0.1:$(PORT) $(LOADTEST_ARGS)

# Soak (loadtest/soak.py): the built Bento on a free loopback port, its log beside the results, mixed traffic
# for SOAK_DURATION; checks failures, p99 drift, memory growth and the log (the access log on, so the scan covers
# a line per request); the service always stops after.
SOAK_DURATION ?= 10m
SOAK_WINDOW ?= 60
SOAK_USERS ?= 100
soak: $(STATE)/built.stamp
	@set -eu; name=$$(date -u +%Y%m%dT%H%M%SZ)-soak; dir=$${LOADTEST_RESULTS:-loadtest/results}/$$name; mkdir -p $$dir; \
	port=$(or $(SOAK_PORT),$$($(BIN)/python -c 'from loadtest.cli import free_port; print(free_port())')); \
	metrics=$$($(BIN)/python -c 'from loadtest.cli import free_port; print(free_port())'); \
	READMISSION_METRICS_PORT=$$metrics READMISSION_ACCESS_LOG=true setsid $(BIN)/bentoml serve readmission:latest --host 127.0.0.1 --port $$port \
	  >$$dir/service.log 2>&1 & pid=$$!; \
	trap 'kill -TERM -- -$$pid 2>/dev/null || kill -TERM $$pid 2>/dev/null || true; wait $$pid 2>/dev/null || true' EXIT; \
	trap 'exit 130' INT TERM; \
	echo "service: 127.0.0.1:$$port, pid $$pid, log $$dir/service.log"; \
	$(BIN)/python loadtest/soak.py --host http://127.0.0.1:$$port --metrics http://127.0.0.1:$$metrics/metrics \
	  --duration $(SOAK_DURATION) --window $(SOAK_WINDOW) \
	  --users $(SOAK_USERS) --name $$name --service-log $$dir/service.log $(SOAK_ARGS)

# The Bento as an OCI image (oci/README.md): Docker if an engine answers, else buildah/podman as root.
oci: build
	oci/build.sh

oci-test: oci
	oci/test.sh

deploy: venv
	bash kserve/deploy.sh $(DEPLOY_ARGS)

# The suite in two steps: first on PYTEST_WORKERS xdist workers (--dist loadfile: a module's tests on one worker, so
# its module-scoped servers start once; the champion is trained and imported once for all of them: tests/conftest.py),
# then the tests marked `serial` alone, since they time load, recovery and timeouts. Both steps always run; `make
# test` fails when either failed. Plain `pytest` runs everything in one process. (Not --dist loadgroup: with pytest
# 9.2, xdist 3.8's `xdist_group` marks do not group anything.)
PYTEST_WORKERS ?= 2
test: lint
	status=0; \
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS) || status=$$?; \
	$(BIN)/pytest -m serial $(PYTEST_ARGS) || status=$$?; \
	exit $$status

# The fast layer: in-process tests of every room (no server, no training), under a minute.
test-unit: venv
	$(BIN)/pytest tests/unit

# Style, and the one-way layers of bento/ (pyproject.toml's import-linter contracts; ARCHITECTURE.md).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Known vulnerabilities in every version uv.lock pins (.ci/audit.py says which sources work here); JSON report.
audit: venv
	$(BIN)/python .ci/audit.py --report $(STATE)/audit.json

bench: build
	$(BIN)/python -m bench.run

clean:
	rm -rf $(STATE) .pytest_cache
