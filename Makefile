# slotkeeper: `make run` shows the quickstart on the embedded ledger, `make test` runs every check.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv
BIN := $(VENV)/bin
SK := $(BIN)/slotkeeper
QUICKSTART := examples/quickstart
QS_STATE := .slotkeeper/quickstart
QS_FLAGS := --state sqlite:///$(QS_STATE)/state.db

.PHONY: install dev run test lint typecheck unit docs clean postgres browser screenshot lock audit

# The locked requirements (`make lock` writes them from pyproject.toml): every package pinned with
# ==, with the sha256 of each of its files on PyPI. runtime.lock is what the image runs, build.lock
# the build backend (hatchling) and what it needs, dev.lock all of them plus the dev extras, at
# the same versions. pip installs them with --require-hashes, then the project itself with
# --no-deps --no-build-isolation: nothing is fetched unpinned, the build backend included (with
# build isolation pip would fetch hatchling by name, unhashed, into a temporary environment).
RUNTIME_LOCK := requirements/runtime.lock
BUILD_LOCK := requirements/build.lock
DEV_LOCK := requirements/dev.lock
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check

$(VENV)/.runtime: pyproject.toml $(RUNTIME_LOCK) $(BUILD_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes -r $(RUNTIME_LOCK) -r $(BUILD_LOCK)
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes -r $(DEV_LOCK)
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(VENV)/.runtime $@

install: $(VENV)/.runtime
dev: $(VENV)/.dev

run: $(VENV)/.runtime
	rm -rf $(QS_STATE)
	@echo "== revision 1: a first set of environments =="
	$(SK) validate -m $(QUICKSTART)/1-initial
	$(SK) apply --yes -m $(QUICKSTART)/1-initial $(QS_FLAGS) --secrets-dir $(QS_STATE)/secrets
	@echo
	@echo "== revision 2: a new api version (supersede) and a removed chart (decommission) =="
	$(SK) apply --yes -m $(QUICKSTART)/2-next $(QS_FLAGS) --secrets-dir $(QS_STATE)/secrets
	@echo
	$(SK) status $(QS_FLAGS)
	@echo
	$(SK) history production $(QS_FLAGS)
	@echo
	$(SK) keys list $(QS_FLAGS)
	@echo
	@echo "== promotion: what promoting staging's api into production would write (--dry-run) =="
	$(SK) promote staging production api -m $(QUICKSTART)/2-next $(QS_FLAGS) --dry-run
	@echo
	@echo "The same in a browser: $(SK) ui $(QS_FLAGS) -m $(QUICKSTART)/2-next  (http://127.0.0.1:8080/)"

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev postgres browser
	$(BIN)/pytest --cov --cov-report=term -m "not slow"

# The long end-to-end cases (marked slow: real back-off sleeps, stalls past every timeout),
# left out of `make test` to keep it within ten minutes; each has a faster case there.
.PHONY: slow
slow: $(VENV)/.dev postgres
	$(BIN)/pytest -m slow

# The tests use the local PostgreSQL server (127.0.0.1:5432, trust auth, database test).
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  (pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n 1) main start && sleep 2) || \
	  echo "PostgreSQL is not running at 127.0.0.1:5432: the PostgreSQL tests will fail"

# The dashboard's browser test drives Debian's headless Chromium (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard's browser test"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Regenerates docs/dashboard.png (the README's picture) from the browser test.
screenshot: $(VENV)/.dev browser
	SLOTKEEPER_UPDATE_SCREENSHOT=1 $(BIN)/pytest -q --no-cov tests/test_dashboard_browser.py

# The reference in docs/ (the README's top part as its home page, ARCHITECTURE.md as a page),
# built into site/ by mkdocs in strict mode: a broken link or anchor, or a page missing from the
# navigation in mkdocs.yml, fails it. `.venv/bin/mkdocs serve` shows it while you edit.
docs: $(VENV)/.dev
	$(BIN)/mkdocs build --strict

test: lint typecheck docs unit

clean:
	rm -rf $(VENV) .slotkeeper .pytest_cache .mypy_cache .ruff_cache .coverage site

# Rewrites the three lock files from pyproject.toml (after a dependency changed there). Current
# pins are kept where they still fit; `make lock LOCK_FLAGS=--upgrade` moves everything to the
# newest releases, `make lock LOCK_FLAGS='--upgrade-package NAME'` one package. Hashes come from
# PyPI alone: local pip settings (extra indexes, wheel directories, constraints) are ignored, so
# every hash is one of the files that the image build and CI download. The dev lock is resolved
# first; the runtime and build locks are resolved under it, so a package has one version in all.
# Resolved for Python 3.11 on Linux, the image's interpreter.
LOCK_INDEX := https://pypi.org/simple
PIP_COMPILE := env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT \
	PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet \
	--generate-hashes --allow-unsafe --strip-extras --index-url $(LOCK_INDEX) \
	--no-emit-index-url --no-emit-find-links $(LOCK_FLAGS)

lock: $(VENV)/.dev
	$(PIP_COMPILE) --extra dev --all-build-deps -o $(DEV_LOCK) pyproject.toml
	$(PIP_COMPILE) -c $(DEV_LOCK) -o $(RUNTIME_LOCK) pyproject.toml
	$(PIP_COMPILE) -c $(DEV_LOCK) --all-build-deps --only-build-deps -o $(BUILD_LOCK) pyproject.toml

# The vulnerability audit of the locked requirements, with pip-audit from the dev lock. It asks the
# first vulnerability database that answers: PyPI's (the per-release JSON API, from the Python
# advisory database) or OSV's. --disable-pip: the locks are complete, so pip-audit reads them as
# they are and installs nothing. Where no database answers it says so and fails (exit 2): an
# audit that could not run is never reported as passed.
AUDIT_LOCKS := $(RUNTIME_LOCK) $(BUILD_LOCK) $(DEV_LOCK)
comma := ,
empty :=
space := $(empty) $(empty)
AUDIT_DATABASES := pypi=https://pypi.org/pypi/jinja2/3.1.6/json \
	osv=https://api.osv.dev/v1/vulns/PYSEC-2021-66
REACHABLE := $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20).close()'

audit: $(VENV)/.dev
	@for database in $(AUDIT_DATABASES); do \
	  service=$${database%%=*}; url=$${database#*=}; \
	  if $(REACHABLE) "$$url" 2>/dev/null; then \
	    echo "make audit: checking $(AUDIT_LOCKS) against the $$service vulnerability database"; \
	    exec $(BIN)/pip-audit --vulnerability-service "$$service" --disable-pip --require-hashes \
	      --strict --progress-spinner off $(addprefix -r ,$(AUDIT_LOCKS)); \
	  fi; \
	done; \
	echo "make audit: no vulnerability database reachable (tried $(subst $(space),$(comma) ,$(foreach d,$(AUDIT_DATABASES),$(word 2,$(subst =, ,$(d)))))): nothing was checked" >&2; \
	exit 2

# The full reliability run: 30+ SIGKILLs on a 300+ action change set against the fake GitHub,
# then a run under injected faults, the operations corpus, and 21 HA rounds (two replicas on
# the local PostgreSQL, the leader killed, frozen or partitioned mid-apply); prints the figures
# and writes .slotkeeper/reliability.json. (A quick version of each inside `make unit`:
# tests/reliability/test_reliability.py.)
.PHONY: bench
# Every performance target of issue 8, both sides of each comparison in one run: prints one
# table with PASS/FAIL and writes .slotkeeper/bench.json (`make bench BENCH=--quick`: small).
# (A quick version of each benchmark runs inside `make unit`: tests/bench/test_*.py.)
bench: $(VENV)/.dev postgres
	$(BIN)/python -m tests.bench $(BENCH)

.PHONY: reliability
reliability: $(VENV)/.dev postgres
	$(BIN)/python -m tests.reliability

# Mutation testing of the trust boundary (cosmic-ray; the modules, functions, operators and tests
# in tests/mutation/scope.toml): prints mutants, killed, survived and score per module and every
# survivor, and fails when a module is under its floor; accepted survivors, each with its reason,
# are in tests/mutation/accepted.toml. Two lanes (scratch copies of the tree) run at once;
# `make mutate MUTATE='--module webhook'` runs one module.
.PHONY: mutate
mutate: $(VENV)/.dev postgres
	$(BIN)/python -m tests.mutation $(MUTATE)
