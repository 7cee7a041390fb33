# doce: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test setup setup-dev browser migrate lint check clean

## make run: install everything (first time), migrate, start web + worker; Ctrl-C stops both
run: setup migrate
	DEBUG=$${DEBUG:-true} $(PY) manage.py rundoce

## make test: install everything incl. test tools and Chromium, then run the whole suite
test: setup-dev browser
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed node_modules/.installed

setup-dev: setup $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "doce needs Python 3.11 (set PYTHON=/path/to/python3.11)"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The OpenCode server binary, pinned in package.json / package-lock.json (versions and
# hashes). `npm install`, not `npm ci`: npm 11 refuses `ci` when the lock lacks the other
# platforms' optional packages; install still follows the lock and leaves it unchanged.
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund
	touch $@

# UI tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@test -x $(CHROMIUM) || { \
	  echo "Installing Chromium for the browser tests..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

migrate: setup
	DEBUG=$${DEBUG:-true} $(PY) manage.py migrate --noinput

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

check: setup-dev
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) node_modules
