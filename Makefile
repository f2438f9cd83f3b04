# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCENARIO ?= happy
export CUTOVER_HOME ?= $(CURDIR)/.cutover
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv demo test ui lint bench validate clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

## make demo [SCENARIO=rollback]: sandbox up, Prefect server up, rehearse the Shanxi schedule
demo: venv
	@scripts/demo.sh $(SCENARIO)

## make test: the whole suite against real local servers
test: venv
	$(BIN)/python -m pytest -q

## make ui: the Prefect UI on http://127.0.0.1:4299 with a paced rehearsal to watch
ui: venv
	@scripts/demo.sh ui

lint: venv
	$(BIN)/ruff check .

validate: venv
	$(BIN)/cutover validate runbooks/*.yaml

bench: venv
	$(BIN)/python bench/run.py

clean:
	-$(BIN)/cutover server stop
	-$(BIN)/python -m sandbox down --dir .sandbox
	rm -rf .cutover .sandbox .prefect
