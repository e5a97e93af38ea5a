# Alcove: `make run` serves a local instance on the embedded database; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
PYTEST_ARGS ?= -n 2
SOURCES := server signalling tests

.PHONY: run test lint bench assets setup setup-dev node-deps messages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[dev]"
	@touch $@ $(VENV)/.installed

setup: $(VENV)/.installed assets

setup-dev: $(VENV)/.installed-dev assets node-deps

# JavaScript tools for the tests only (axe-core for the browser tests), pinned by
# package-lock.json; installed again when node_modules lacks them or the lock changed. Without
# npm the browser tests are skipped, except under CI, where that is an error.
NPM_STAMP := node_modules/.alcove-package-lock.json
node-deps:
	@if [ -f node_modules/axe-core/axe.min.js ] && cmp -s package-lock.json $(NPM_STAMP); then \
		true; \
	elif ! command -v npm >/dev/null; then \
		echo "npm is missing (Debian: apt-get install npm): the browser tests need axe-core" >&2; \
		test -z "$$CI"; \
	else \
		npm ci --no-audit --no-fund && cp package-lock.json $(NPM_STAMP); \
	fi

# Web assets: ES modules and CSS are served as they are, except Yjs (the shared worksheets),
# bundled by esbuild from package-lock.json's version into web/static/vendor/ (git-ignored).
# Rebuilt when the bundle is missing or the lock is newer. Without npm the worksheets cannot
# load (the rest of the app works), so that is a warning here and an error under CI.
YJS_BUNDLE := web/static/vendor/yjs.js
assets: $(YJS_BUNDLE)

$(YJS_BUNDLE): package-lock.json
	@if ! command -v npm >/dev/null; then \
		echo "npm is missing (Debian: apt-get install npm): it builds $@ for the worksheets" >&2; \
		test -z "$$CI"; \
	else \
		if [ ! -x node_modules/.bin/esbuild ] || [ ! -d node_modules/yjs ] || ! cmp -s package-lock.json $(NPM_STAMP); then \
			npm ci --no-audit --no-fund && cp package-lock.json $(NPM_STAMP); \
		fi && npm run --silent build; \
	fi

run: setup
	@mkdir -p var
	$(BIN)/alcove migrate
	$(BIN)/alcove demo
	$(BIN)/alcove serve

test: setup-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup-dev
	$(BIN)/ruff check $(SOURCES) bench
	$(BIN)/ruff format --check $(SOURCES) bench
	$(BIN)/mypy --strict $(SOURCES) bench

bench: setup-dev
	$(BIN)/python -m bench.join --runs 50
	$(BIN)/python -m bench.booking --runs 50 --bookings 300
	$(BIN)/python -m bench.fanout --pairs 100 --size 200 --seconds 10 --idle 2000 --rounds 3
	$(BIN)/python -m bench.fanout --instructions --pairs 20 --seconds 10
	$(BIN)/python -m bench.worksheet --pairs 50 --rate 20 --seconds 30 --rounds 2
	$(BIN)/python -m bench.reconnect --drops 30 --restarts 5

# Refresh the message catalogs after adding or changing user-facing strings.
messages: setup-dev
	$(BIN)/pybabel extract -F babel.cfg -o web/locale/messages.pot --no-location --omit-header --sort-output .
	$(BIN)/pybabel update -i web/locale/messages.pot -d web/locale --no-fuzzy-matching --omit-header

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache node_modules web/static/vendor
