# Start here. `make run` serves the gateway with a demo account; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < requirements.lock | cut -d' ' -f1)

.PHONY: run test fuzz lint format schema lock clean

$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@rm -f $(VENV)/.installed-* && touch $@

## Serve on 127.0.0.1:$$PORT (default 8000) with a migrated SQLite database and a seeded demo account.
run: $(STAMP)
	$(BIN)/python -m cli dev

## Every test: SQLite always; PostgreSQL (127.0.0.1:5432) too, skipped with a reason when it is not running.
test: $(STAMP)
	$(BIN)/python -m pytest

## A longer fuzz run than `make test`'s: FUZZ_EXAMPLES (default 1000) generated operations of each kind, both DBs.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(BIN)/python -m pytest tests/gateway/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Regenerate schema.graphql from the code (a test fails when it drifts).
schema: $(STAMP)
	$(BIN)/python -m cli export-schema schema.graphql

## Re-pin every dependency from pyproject.toml into requirements.lock.
lock:
	rm -rf /tmp/billing-lock && $(PYTHON) -m venv /tmp/billing-lock
	$(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))" > /tmp/billing-lock/requirements.in
	/tmp/billing-lock/bin/pip install --quiet -r /tmp/billing-lock/requirements.in
	/tmp/billing-lock/bin/pip freeze --exclude-editable | grep -v '^pip==' > requirements.lock

clean:
	rm -rf $(VENV) var
