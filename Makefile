# The two commands a newcomer needs:
#   make start   — the whole thing on the embedded default (web, watcher, demo data)
#   make test    — every test (SQLite always; PostgreSQL too when it answers on 127.0.0.1)
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: start test install bench clean

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

clean:
	rm -rf $(VENV) instance .pytest_cache
