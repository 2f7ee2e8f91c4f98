# The commands a newcomer needs: `make demo`, and `make test-fast` while working (`make test` before a
# merge; it is what CI runs). All set up $(VENV) first, from uv.lock.
#   PYTHON=python3.12 make demo      another interpreter (croco supports Python 3.11-3.14)
#   VENV=.venv-py3.13 make test      another environment folder
.PHONY: setup demo lint test test-fast ui lock relock

VENV ?= .venv
export VENV

setup:
	scripts/setup.sh

demo:  # installs what the demo needs (no test extras)
	CROCO_EXTRAS=$${CROCO_EXTRAS:-cpu} scripts/setup.sh
	$(VENV)/bin/croco demo

lint:
	CROCO_EXTRAS=$${CROCO_EXTRAS:-cpu,dev} scripts/setup.sh
	$(VENV)/bin/ruff format --check croco_pipeline tests benchmarks
	$(VENV)/bin/ruff check croco_pipeline tests benchmarks

test: lint  # everything, the system tests included
	$(VENV)/bin/python -m pytest

test-fast: lint  # all but the tests marked `system` (SLURM, browser, S3 server, Ray, kills, benchmarks)
	$(VENV)/bin/python -m pytest -m "not system"

# dg looks for the project's environment in .venv and warns unless it is the active one.
ui: setup
	DAGSTER_HOME=$(CURDIR)/.dagster_home VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/dg dev

lock:  # re-resolve uv.lock after a change to pyproject.toml
	scripts/lock.sh

relock:  # every package to the newest version pyproject.toml allows, then the tests on that set
	scripts/lock.sh --upgrade
	$(MAKE) test
