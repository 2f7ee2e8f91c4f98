# The commands a newcomer needs: `make demo`, and `make test-fast` while working (`make test` before a
# merge; it is what CI runs). All set up .venv first.
.PHONY: setup demo lint test test-fast ui

setup:
	scripts/setup.sh

demo:  # installs what the demo needs (no test extras)
	CROCO_EXTRAS=$${CROCO_EXTRAS:-cpu} scripts/setup.sh
	.venv/bin/croco demo

lint:
	CROCO_EXTRAS=$${CROCO_EXTRAS:-cpu,dev} scripts/setup.sh
	.venv/bin/ruff format --check croco_pipeline tests benchmarks
	.venv/bin/ruff check croco_pipeline tests benchmarks

test: lint  # everything, the system tests included
	.venv/bin/python -m pytest

test-fast: lint  # all but the tests marked `system` (SLURM, browser, S3 server, Ray, kills, benchmarks)
	.venv/bin/python -m pytest -m "not system"

ui: setup
	DAGSTER_HOME=$(CURDIR)/.dagster_home .venv/bin/dagster dev -w workspace.yaml
