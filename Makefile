# SmartInvoicing Hub (fbrhub): developer and CI entry points.
#
#   make demo      set up .venv if needed, then run the end-to-end demo (DEMO_ARGS=...)
#   make test      set up .venv if needed, then run the test suite (PYTEST_ARGS=...)
#   make audit     vulnerability assessment: pip-audit (PyPI), ruff's security rules on
#                  server/ and clients/, npm audit; exceptions in audit-ignore.toml
#   make lint      ruff check + ruff format --check + mypy + import contracts + buf lint/format
#                  + generated-code check
#   make gen       regenerate the Python stubs (clients/hub/src/fbrhub/) from proto/
#   make gen-clients   Go, Java, C# and TypeScript code from proto/ into gen/ (buf generate)
#   make descriptors   gen/fbrhub.binpb: the contract as a descriptor set with source info
#
# The PostgreSQL suite runs only when FBRHUB_TEST_POSTGRES_URL is set
# (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
GEN_VENV := .venv-gen
GEN_PY := $(GEN_VENV)/bin/python
GEN_STAMP := $(GEN_VENV)/.installed
NODE_STAMP := node_modules/.installed
BUF := node_modules/.bin/buf

DEMO_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
# Ref for `make buf-breaking`; any buf input works, e.g. '.git#branch=main' or a .binpb image.
BUF_AGAINST ?= .git\#branch=main

.PHONY: help venv node demo test audit lint ruff ruff-check ruff-format-check mypy imports fmt gen \
	check-gen gen-clients descriptors buf-lint buf-format buf-build buf-breaking bench clean distclean

help:
	@echo "targets: venv demo test audit lint gen check-gen gen-clients descriptors buf-lint buf-format buf-build buf-breaking fmt bench clean distclean"

# ---------------------------------------------------------------------------------------------
# Environments (stamp files keep repeated runs fast; they are rebuilt when their inputs change)

venv: $(VENV_STAMP)

# The SDK (clients/hub, distribution fbrhub-sdk) first: the hub depends on it by name.
$(VENV_STAMP): pyproject.toml clients/hub/pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e './clients/hub[otel,test]'
	$(PY) -m pip install -qq -e '.[dev]'
	@touch $@

# The Python code generator, pinned apart from the hub (scripts/gen-requirements.txt says why).
$(GEN_STAMP): scripts/gen-requirements.txt
	@test -x $(GEN_PY) || { echo "creating $(GEN_VENV) with $(PYTHON)"; $(PYTHON) -m venv $(GEN_VENV); }
	$(GEN_PY) -m pip install -qq --upgrade pip
	$(GEN_PY) -m pip install -qq -r scripts/gen-requirements.txt
	@touch $@

node: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# ---------------------------------------------------------------------------------------------
# Run

demo: $(VENV_STAMP)
	$(PY) -m examples.demo $(DEMO_ARGS)

test: $(VENV_STAMP)
	@if [ -z "$${FBRHUB_TEST_POSTGRES_URL:-}" ]; then \
		echo "FBRHUB_TEST_POSTGRES_URL is not set: running the SQLite suite only; the PostgreSQL suite was NOT run."; \
	fi
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Exit 1: findings not accepted in audit-ignore.toml; 3: a check could not reach its service
# (reported as NOT CHECKED). AUDIT_ARGS=--strict makes 3 a failure.
AUDIT_ARGS ?=
audit: $(VENV_STAMP)
	$(PY) scripts/audit.py $(AUDIT_ARGS)

bench: $(VENV_STAMP)
	@if [ -f bench/run_all.py ]; then \
		echo "$(PY) bench/run_all.py $(BENCH_ARGS)"; $(PY) bench/run_all.py $(BENCH_ARGS); \
	else \
		echo "no benchmarks yet"; \
	fi

# ---------------------------------------------------------------------------------------------
# Lint and code generation (run `make -k lint` to see every failing check, not just the first)

lint: ruff-check ruff-format-check mypy imports buf-lint buf-format check-gen

ruff: ruff-check ruff-format-check

ruff-check: $(VENV_STAMP)
	$(PY) -m ruff check .

ruff-format-check: $(VENV_STAMP)
	$(PY) -m ruff format --check .

# Architecture contracts from [tool.importlinter] in pyproject.toml.
imports: $(VENV_STAMP)
	$(VENV)/bin/lint-imports --no-cache

# Packages to check come from [tool.mypy] in pyproject.toml; the SDK has its own settings.
mypy: $(VENV_STAMP)
	$(PY) -m mypy
	cd clients/hub && ../../$(PY) -m mypy

fmt: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .
	$(BUF) format -w

gen: $(GEN_STAMP)
	$(GEN_PY) scripts/gen_protos.py

check-gen: $(GEN_STAMP)
	PYTHON=$(GEN_PY) scripts/check_generated.sh

# Go, Java, C# and TypeScript code in gen/ (buf.gen.yaml says which plugins; none remote).
gen-clients: $(NODE_STAMP)
	rm -rf gen/go gen/java gen/csharp gen/ts
	$(BUF) generate

# The contract as a FileDescriptorSet with source info (comments) and its imports, for tools
# that take one: grpcurl -protoset, Postman, Kreya, API gateways.
descriptors: $(NODE_STAMP)
	@mkdir -p gen
	$(BUF) build --as-file-descriptor-set -o gen/fbrhub.binpb
	@echo "wrote gen/fbrhub.binpb"

buf-lint: $(NODE_STAMP)
	$(BUF) lint

buf-format: $(NODE_STAMP)
	$(BUF) format -d --exit-code

buf-build: $(NODE_STAMP)
	$(BUF) build

buf-breaking: $(NODE_STAMP)
	$(BUF) breaking --against '$(BUF_AGAINST)'

# ---------------------------------------------------------------------------------------------

clean:
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache *.egg-info
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
		-name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(GEN_VENV) node_modules gen
