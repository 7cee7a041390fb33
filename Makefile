# doce: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium
# Locked Python dependencies, with hashes: requirements.lock (runtime) and requirements-dev.lock
# (runtime + the dev extra, runtime pins kept identical), resolved by `make lock`.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
UV_VERSION := 0.13.9
NODE_MIN := 18
UV := $(VENV)/bin/uv
# uv resolves from PyPI alone (it ignores pip.conf), for CPython 3.11 on Linux x86_64.
UV_COMPILE = $(UV) pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command 'make lock' $(LOCK_ARGS)
# Locked beside pyproject.toml's dependencies: its [build-system] requires (setuptools, so the
# editable install needs no build isolation, which would fetch it unhashed) and pip itself.
LOCK_EXTRAS = $(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], "pip", sep="\n")'

.PHONY: run test setup setup-dev lock browser sandbox docker migrate lint check clean

## make run: install everything (first time), migrate, start the web server, the site preview,
## the Celery worker (+ beat) and the sign-in worker (manage.py rundoce); Ctrl-C stops them all
run: setup migrate
	DEBUG=$${DEBUG:-true} $(PY) manage.py rundoce

## make test: install everything incl. test tools and Chromium, then run the whole suite; the
## browser tests' screenshots of the main pages stay in test-results/screenshots (git-ignored;
## DOCE_TEST_SCREENSHOTS names another folder)
## Two workers (pytest-xdist): most tests wait on servers, so they overlap well on 2 cores;
## TEST_WORKERS=0 runs them in one process. A file's tests stay on one worker (loadfile):
## the Docker tests share one dockerd (and xdist's loadgroup does not group on pytest 9).
SCREENSHOTS = $${DOCE_TEST_SCREENSHOTS:-test-results/screenshots}
TEST_WORKERS ?= 2
test: setup-dev browser docker
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	@echo "Screenshots of doce's pages: $(SCREENSHOTS)/"

setup: $(VENV)/.installed node_modules/.installed sandbox

setup-dev: setup $(VENV)/.installed-dev

# pip installs exactly the lock (--require-hashes), then doce itself without dependencies and
# with the locked setuptools (no build isolation), so nothing comes from outside the lock.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "doce needs Python 3.11 (set PYTHON=/path/to/python3.11)"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml $(DEV_LOCK)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	touch $@

## make lock: re-resolve requirements.lock and requirements-dev.lock (hashed) from pyproject.toml; keeps pins that still fit, LOCK_ARGS=--upgrade takes the newest
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv==$(UV_VERSION)'
	set -o pipefail; $(LOCK_EXTRAS) | $(UV_COMPILE) pyproject.toml - -o $(LOCK)
	set -o pipefail; $(LOCK_EXTRAS) | $(UV_COMPILE) pyproject.toml - --extra dev -c $(LOCK) -o $(DEV_LOCK)

# The OpenCode server binary, pinned in package.json / package-lock.json (versions and
# hashes). `npm install`, not `npm ci`: npm 11 refuses `ci` when the lock lacks the other
# platforms' optional packages; install still follows the lock and leaves it unchanged.
# Node only installs the binary (its postinstall picks the platform's package); Debian 12's
# nodejs 18 with npm 9 does it and leaves the lock unchanged, as does Node 20 with npm 11.
node_modules/.installed: package.json package-lock.json
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= $(NODE_MIN) ? 0 : 1)' \
		|| { echo "doce needs Node.js $(NODE_MIN) or newer with npm (found: $$(node --version 2>&1))"; exit 1; }
	npm install --no-audit --no-fund
	touch $@

# Every OpenCode server runs sandboxed: bubblewrap (namespaces) and pasta (from passt: its
# network), with iproute2 and nsenter (util-linux) to set the sandbox's routes.
sandbox:
	@command -v bwrap >/dev/null && command -v pasta >/dev/null && command -v ip >/dev/null \
	  && command -v nsenter >/dev/null || { \
	  echo "Installing the sandbox tools (bubblewrap, passt)..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    bubblewrap passt iproute2 util-linux; }

# The docker runtime's tests run a Docker daemon of their own (Debian's docker.io: dockerd,
# containerd, runc) and build the OpenCode image on a Debian base made with debootstrap (no
# registry is pulled from); Compose v2 comes from docker/install-compose-plugin.sh.
docker:
	@command -v dockerd >/dev/null && command -v docker >/dev/null && command -v debootstrap >/dev/null \
	  || { \
	  echo "Installing Docker and debootstrap for the docker runtime's tests..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    docker.io debootstrap iproute2; }
	@docker compose version >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO sh docker/install-compose-plugin.sh; }

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
