# The two commands: `make run` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PROTOS := $(shell find protos -name '*.proto')

.PHONY: setup protos run run-cluster test lint bench clean libvirt-python image compose-secrets compose-up compose-down

setup: $(STAMP)

$(STAMP): pyproject.toml protos/generate.py $(PROTOS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q grpcio-tools googleapis-common-protos
	$(PY) protos/generate.py
	$(PY) -m pip install -q -e '.[dev]'
	@$(MAKE) --no-print-directory libvirt-python
	@touch $@

# The libvirt driver needs libvirt-python, which builds against libvirt-dev. Without it the
# rest of the suite installs and runs, and the driver reports itself unavailable.
libvirt-python:
	@if ! pkg-config --exists libvirt 2>/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    libvirt-dev pkg-config libvirt-daemon >/dev/null; \
	fi
	@if ! command -v victoria-metrics >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends victoria-metrics >/dev/null \
	    || echo "victoria-metrics is not installed: dragonfly keeps metrics in memory"; \
	fi
	@if ! command -v haproxy >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null \
	    || echo "haproxy is not installed: ladybug cannot serve application endpoints"; \
	fi
	@if pkg-config --exists libvirt 2>/dev/null; then \
	  $(PY) -m pip install -q 'libvirt-python>=9' || echo "libvirt-python did not build: the libvirt driver will be unavailable"; \
	else echo "libvirt-dev is not installed: the libvirt driver will be unavailable"; fi

protos: $(STAMP)
	$(PY) protos/generate.py

run: setup
	$(PY) -m services.launcher

# The clustered topology on loopback: 3 etcd members, 3 NATS nodes, 2 replicas of every service.
run-cluster: setup
	$(PY) -m services.launcher --cluster

test: setup
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

# ruff, mypy and the import contract ([tool.importlinter] in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/spider.py
	$(PY) bench/drivers.py
	$(PY) bench/tumblebug.py
	$(PY) bench/cloudtwin_scale.py

clean:
	rm -rf $(VENV) cbapi .run

# Deployments (deploy/): the suite's one image, and docker-compose with its secrets.
IMAGE ?= cb-suite:dev
DOCKER ?= docker
COMPOSE ?= docker-compose -f deploy/docker-compose.yaml
SECRETS_DIR ?= $(CURDIR)/deploy/secrets

image:
	$(DOCKER) build --network host -f deploy/Dockerfile -t $(IMAGE) .

# The CA, every certificate and key, the admin API key and the NATS JWTs, made once (kept if there).
compose-secrets:
	@test -f $(SECRETS_DIR)/admin.key || $(DOCKER) run --rm --network none --user 0 -v $(SECRETS_DIR):/out $(IMAGE) \
	  cb-make-secrets /out --owner 10001

compose-up: compose-secrets
	SUITE_IMAGE=$(IMAGE) SECRETS_DIR=$(SECRETS_DIR) $(COMPOSE) up -d
	@echo "gateway: http://127.0.0.1:8000  admin API key: $(SECRETS_DIR)/admin.key"

compose-down:
	SUITE_IMAGE=$(IMAGE) SECRETS_DIR=$(SECRETS_DIR) $(COMPOSE) down
