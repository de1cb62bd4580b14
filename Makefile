# The two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export IDP_ENV ?= development

.PHONY: run test install clean bench translations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,redis]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/idp db upgrade
	$(BIN)/idp seed-demo
	@echo "Open http://127.0.0.1:5000/register to create an account (Ctrl-C stops the server)."
	$(BIN)/idp serve --host 127.0.0.1 --port 5000

# One pytest-xdist worker per core (at most 4), each with its own database, live server and
# browser; PYTEST_ARGS="-n 0" runs in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --maxprocesses 4 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Refresh the catalogues after changing words people read: new strings appear untranslated in
# idp/translations/*/LC_MESSAGES/messages.po (tests/test_i18n.py fails until they are translated).
translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --omit-header --no-wrap -o .messages.pot .
	$(BIN)/pybabel update -i .messages.pot -d idp/translations --no-wrap --ignore-obsolete
	rm -f .messages.pot

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
