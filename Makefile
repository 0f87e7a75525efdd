# The two commands a newcomer needs:
#   make start   — the whole thing on the embedded default (web, watcher, demo data)
#   make test    — every test (SQLite always; PostgreSQL too when it answers on 127.0.0.1)
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: start test install bench clean translations screens

$(BIN)/flask: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/flask

install: $(BIN)/flask

start: install
	BUSANPAY_INSTANCE=$${BUSANPAY_INSTANCE:-$(CURDIR)/instance} scripts/start

test: install
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_ARGS)

# Extract every _() string, merge it into translations/*/messages.po, compile the .mo files and
# list what still needs a translator (`scripts/translations --check` fails while any does).
translations: install
	$(BIN)/python scripts/translations

# Refresh the committed screenshots in docs/screens/ (make test writes to tests/e2e/artifacts/).
screens: install
	BUSANPAY_SCREENS_DIR=$(CURDIR)/docs/screens $(BIN)/python -m pytest -q -n 0 -p no:cacheprovider tests/e2e

clean:
	rm -rf $(VENV) instance .pytest_cache
