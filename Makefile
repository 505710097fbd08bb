# Two commands for a newcomer: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test lint format bench-crypto bench-ingest bench-consent-api clean

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

test: install
	@echo "database: $${DATABASE_URL:-sqlite (in memory)}"
	DJANGO_SETTINGS_MODULE=cdp.settings.test $(PY) -m pytest $(PYTEST_ARGS)

lint: install
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

# Needs PostgreSQL (drops and recreates BENCH_CONSENT_API_DATABASE_URL) and Redis at
# 127.0.0.1:6379 (flushes database 13, the shared cache of the cached run).
BENCH_CONSENT_API_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cdp_bench_consent_api
bench-consent-api: install
	$(PY) bench/consent_api.py --database-url $(BENCH_CONSENT_API_DATABASE_URL) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
