# Two commands for a newcomer: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test lint format bench-crypto bench-ingest bench-drain bench-consent-api bench-dsr bench-import bench-audiences bench-matching clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p var
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo
	@echo "Serving on http://127.0.0.1:8000  (admin: /admin/, API docs: /api/docs/)"
	$(PY) manage.py runserver 127.0.0.1:8000

# The browser tests' SDK bundles (tests/browser/harness.py), installed when missing or older
# than the lock file. Without npm, or offline, this says so and goes on: those tests then skip,
# naming what is missing (or fail, when CI is set; .ci/run installs them itself).
BROWSER_NPM := tests/browser/node_modules/.package-lock.json
$(BROWSER_NPM): tests/browser/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "npm not found: the browser tests will skip (or fail, if CI is set); apt-get install npm"; \
	elif ! npm ci --prefix tests/browser --no-audit --no-fund; then \
		echo "npm ci failed: the browser tests will skip (or fail, if CI is set)"; \
	fi

test: install $(BROWSER_NPM)
	@echo "database: $${DATABASE_URL:-sqlite (in memory)}"
	DJANGO_SETTINGS_MODULE=cdp.settings.test $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	@mkdir -p var
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports
	DJANGO_SETTINGS_MODULE=cdp.settings.test $(PY) manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=cdp.settings.test $(PY) manage.py spectacular --validate --fail-on-warn --file var/schema.yml

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-crypto: install
	DJANGO_SETTINGS_MODULE=cdp.settings.test $(PY) bench/crypto.py

# Needs PostgreSQL (drops and recreates the database in BENCH_DATABASE_URL) and, with
# BENCH_PROCESSING_WORKERS > 0, Redis at 127.0.0.1:6379 for the Celery broker.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp_bench
bench-ingest: install
	$(PY) bench/ingest.py --database-url $(BENCH_DATABASE_URL) $(BENCH_ARGS)

# The intake drain alone, in one process (drops and recreates cdp_bench_drain).
bench-drain: install
	$(PY) bench/drain.py $(BENCH_ARGS)

# Needs PostgreSQL (drops and recreates BENCH_CONSENT_API_DATABASE_URL) and Redis at
# 127.0.0.1:6379 (flushes database 13, the shared cache of the cached run).
BENCH_CONSENT_API_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp_bench_consent_api
bench-consent-api: install
	$(PY) bench/consent_api.py --database-url $(BENCH_CONSENT_API_DATABASE_URL) $(BENCH_ARGS)

# Needs PostgreSQL (drops and recreates BENCH_DSR_DATABASE_URL); loads a million events first.
BENCH_DSR_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp_bench_dsr
bench-dsr: install
	$(PY) bench/dsr.py --database-url $(BENCH_DSR_DATABASE_URL) $(BENCH_ARGS)

# Needs PostgreSQL (drops and recreates BENCH_IMPORT_DATABASE_URL). Default: 100k then 1M rows;
# on a small machine try BENCH_ARGS="--rows 100000 --memory-rows 20000".
BENCH_IMPORT_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp_bench_import
bench-import: install
	nice $(PY) bench/import.py --database-url $(BENCH_IMPORT_DATABASE_URL) $(BENCH_ARGS)

# Needs PostgreSQL (drops and recreates BENCH_AUDIENCES_DATABASE_URL) and Redis at
# 127.0.0.1:6379 (flushes database 15, the broker of its Celery worker).
BENCH_AUDIENCES_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp_bench_audiences
bench-audiences: install
	nice $(PY) bench/audiences.py --database-url $(BENCH_AUDIENCES_DATABASE_URL) $(BENCH_ARGS)

# Needs PostgreSQL (drops and recreates BENCH_MATCHING_DATABASE_URL); runs Splink 4 (DuckDB, the
# dev extra) on the same records. Default 20k people (~30k records); BENCH_ARGS="--people N".
BENCH_MATCHING_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp_bench_matching
bench-matching: install
	nice $(PY) bench/matching.py --database-url $(BENCH_MATCHING_DATABASE_URL) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
