# Production agents on GCP, in Python. `make help` lists the commands.
#
# Set-up is part of every command: the first one creates .venv with a Python 3.11
# or 3.12 it finds, installs the pinned packages it needs, and reuses them after.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_CANDIDATES := python3.12 python3.11 python3
PYTHON ?= $(shell for p in $(PYTHON_CANDIDATES); do \
	  $$p -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' \
	  >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.stamp
INSTALL_INPUTS := pyproject.toml constraints.txt

# Labs whose graders run the Pulumi stack under mocks: they need the infra extra.
INFRA_LABS := 2 4 18 21

.PHONY: help demo test lint infra-test up progress db-stop db-status constraints clean
.SECONDEXPANSION:

help:
	@echo "make demo       start Postgres, the offline model, two runners and the gateway;"
	@echo "                drive a scripted conversation through the public API"
	@echo "make test       everything CI runs: lint, type-check, tests"
	@echo "make lint       ruff and mypy alone"
	@echo "make infra-test the Pulumi stack's offline tests alone (mocks, no cloud)"
	@echo "make lab-N      grade your lab N (labs/NN-*); V=1 for tracebacks"
	@echo "make solution-N grade the reference solution of lab N"
	@echo "make progress   a table of all 25 labs: tasks passed, what to do next"
	@echo "make up         run the offline model, two runners and the gateway until Ctrl-C"
	@echo "make db-status  say whether the embedded Postgres runs"
	@echo "make db-stop    stop the embedded Postgres"
	@echo "make clean      remove .venv and the embedded database"

$(STAMP)-base: $(INSTALL_INPUTS)
	@test -n "$(PYTHON)" || { echo "error: need Python 3.11 or 3.12 on PATH (or PYTHON=/path/to/python)"; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing the capstone's pinned packages into $(VENV)"
	@$(PIP) install -c constraints.txt -e .
	@touch $@

$(STAMP)-test: $(STAMP)-base
	@$(PIP) install -c constraints.txt -e '.[test,notebooks]'
	@touch $@

$(STAMP)-infra: $(STAMP)-test
	@echo "installing Pulumi and its GCP and Kubernetes providers into $(VENV)"
	@$(PIP) install -c constraints.txt -e '.[test,notebooks,infra]'
	@touch $@

demo: $(STAMP)-base
	@$(PY) -m capstone.demo

up: $(STAMP)-base
	@$(PY) -m capstone.local

test: lint
	@$(PY) -m course.build --check
	@$(PY) -m pytest -p no:cacheprovider tests infra/tests notebooks --nbval-lax

lint: $(STAMP)-infra
	@$(PY) -m ruff check capstone course graders tests infra
	@$(PY) -m ruff format --check -q capstone course graders tests infra
	@$(PY) -m mypy capstone course infra

infra-test: $(STAMP)-infra
	@$(PY) -m pytest -p no:cacheprovider infra/tests

# Labs. V=1 shows tracebacks.
lab-%: $(STAMP)-test $$(if $$(filter $$*,$(INFRA_LABS)),$(STAMP)-infra)
	@$(PY) -m course.grade $* $(if $(V),-v)

solution-%: $(STAMP)-test $$(if $$(filter $$*,$(INFRA_LABS)),$(STAMP)-infra)
	@$(PY) -m course.grade $* --solution $(if $(V),-v)

progress: $(STAMP)-test
	@$(PY) -m course.progress

db-status: $(STAMP)-base
	@$(PY) -m capstone.devdb status

db-stop: $(STAMP)-base
	@$(PY) -m capstone.devdb stop

# Re-pin every package after changing a pin in pyproject.toml.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install -q -e '.[test,notebooks,infra]'
	{ echo "# Every package the capstone, its tests, notebooks and the Pulumi stack install,"; \
	  echo "# pinned. Regenerate with 'make constraints' after changing a pin in pyproject.toml."; \
	  .venv-pin/bin/python -m pip list --format=freeze --exclude-editable \
	    | grep -v -E '^(pip|setuptools)==' | sort -f; } > constraints.txt
	rm -rf .venv-pin

clean:
	-@test -x $(PY) && $(PY) -m capstone.devdb stop
	rm -rf $(VENV) .data
