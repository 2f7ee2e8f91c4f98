# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first.
.PHONY: setup demo test ui

setup:
	scripts/setup.sh

demo: setup
	.venv/bin/croco demo

test: setup
	.venv/bin/python -m pytest

ui: setup
	DAGSTER_HOME=$(CURDIR)/.dagster_home .venv/bin/dagster dev -w workspace.yaml
