# Fresh machine: `make up` runs the whole thing on embedded defaults, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data/dataset_diabetes.zip)
# The UCI data: $READMISSION_DATA, else the team's shared copy, else `readmission train` downloads it.
export READMISSION_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA))

.PHONY: venv up train test lint format clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[serve,train,dev]'
	touch $@

venv: $(BIN)/.installed

train: venv
	$(BIN)/readmission train

up: train

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf .readmission .pytest_cache
