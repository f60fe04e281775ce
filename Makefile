# Every target runs deploy/setup.sh first: it is idempotent and only checks once things are in place.
VENV := .venv/bin
CONFIG ?= examples/config.yaml

.PHONY: setup up validate test lint unit integration

setup:
	deploy/setup.sh

up: setup
	$(VENV)/gorchester up --config $(CONFIG)

validate: setup
	$(VENV)/gorchester validate --config $(CONFIG)

lint: setup
	$(VENV)/ruff check .
	$(VENV)/mypy

unit: setup
	$(VENV)/pytest -q -m "not integration"

integration: setup
	$(VENV)/pytest -q -m integration

test: lint
	$(VENV)/pytest -q
