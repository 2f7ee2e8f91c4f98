# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first.
.PHONY: setup demo test ui

setup:
	scripts/setup.sh

demo:  # installs what the demo needs (no test extras)
	CROCO_EXTRAS=$${CROCO_EXTRAS:-cpu} scripts/setup.sh
	.venv/bin/croco demo

test:
	CROCO_EXTRAS=$${CROCO_EXTRAS:-cpu,dev} scripts/setup.sh
	.venv/bin/ruff format --check croco_pipeline tests benchmarks
	.venv/bin/ruff check croco_pipeline tests benchmarks
	.venv/bin/python -m pytest

ui: setup
	DAGSTER_HOME=$(CURDIR)/.dagster_home .venv/bin/dagster dev -w workspace.yaml
