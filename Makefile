# The two commands: `make run` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PROTOS := $(shell find protos -name '*.proto')

.PHONY: setup protos run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml protos/generate.py $(PROTOS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q grpcio-tools googleapis-common-protos
	$(PY) protos/generate.py
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

protos: $(STAMP)
	$(PY) protos/generate.py

run: setup
	$(PY) -m services.launcher

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/spider.py

clean:
	rm -rf $(VENV) cbapi .run
