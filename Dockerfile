# doce production image. Every doce service in docker-compose.yml runs it (web, preview,
# worker, beat, the one-shot migrate and the pod that holds web's and worker's
# namespaces); see docs/deploy.md.
#
#   docker compose build
#   docker build -t doce .                                   # the image alone
#   docker build --build-arg OPENCODE_PACKAGE=opencode-linux-x64-baseline -t doce .
#                                                            # CPUs without AVX2

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- stage 1: the pinned OpenCode binary ------------------------------------------------
# package.json / package-lock.json pin opencode-ai; its real binary lives in the platform
# package (node_modules/opencode-linux-x64/bin/opencode). Only that folder reaches the
# final image: no Node.js, no npm at run time.
FROM ${PYTHON_IMAGE} AS opencode
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: opencode-ai's postinstall only links the platform binary into
# node_modules/opencode-ai/bin (another 180 MB); doce runs the platform package's copy.
# `npm install` (not `npm ci`): the lock pins every version and hash, but npm 11 refuses
# `ci` when the lock lacks the other platforms' optional packages.
RUN npm install --ignore-scripts --no-audit --no-fund
ARG OPENCODE_PACKAGE=opencode-linux-x64
RUN test -x "node_modules/${OPENCODE_PACKAGE}/bin/opencode" || { \
      echo "node_modules/${OPENCODE_PACKAGE}/bin/opencode is missing: package-lock.json pins" \
           "the linux x64 OpenCode packages only (build for linux/amd64)." >&2; exit 1; }

# --- stage 2: the application -----------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# OpenCode's agent uses git (snapshots) and ripgrep (file search); without rg on PATH it
# would download one at run time. Every OpenCode server runs in a sandbox made with
# bubblewrap and pasta (passt), whose routes are set with iproute2 and nsenter; with the
# docker runtime, each project's "net" service sets its routes with this image's iproute2,
# and its "devport" service forwards the preview to the site's dev server with socat.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ripgrep \
       bubblewrap passt iproute2 util-linux socat \
    && rm -rf /var/lib/apt/lists/*

# The home's XDG folders exist and are doce's: with the docker runtime this home seeds each
# project's home volume, where docker creates the provider files' mount points
# (~/.config/gcloud, ~/.config/doce/headers) as root, and OpenCode must still write
# ~/.config/opencode.
ARG DOCE_UID=1000
RUN groupadd --system --gid "${DOCE_UID}" doce \
    && useradd --system --uid "${DOCE_UID}" --gid doce --create-home --home-dir /home/doce \
       --shell /usr/sbin/nologin doce \
    && install -d -o doce -g doce -m 0700 /var/lib/doce \
    && install -d -o doce -g doce /home/doce/.config /home/doce/.cache /home/doce/.local \
       /home/doce/.local/share /home/doce/.local/state

WORKDIR /app

# Dependencies first, so this layer is reused until the lock changes: exactly the
# versions (and hashes) CI tested, as `make setup` installs them.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY . .
# Editable on purpose: a plain `pip install .` copies only the Python packages into
# site-packages (no templates/, no doce/static/) and settings.BASE_DIR would point there.
RUN pip install --no-deps --no-build-isolation --editable .

ARG OPENCODE_PACKAGE=opencode-linux-x64
COPY --from=opencode /build/node_modules/${OPENCODE_PACKAGE} /app/node_modules/${OPENCODE_PACKAGE}

# Settings the image fixes: the data folder is the volume docker-compose.yml mounts;
# static files live in the image, outside that volume; settings never read a .env file
# inside the container (compose passes the environment).
ENV DOCE_DATA_DIR=/var/lib/doce \
    STATIC_ROOT=/app/staticfiles \
    DOCE_OPENCODE_BIN=/app/node_modules/${OPENCODE_PACKAGE}/bin/opencode \
    DOCE_ENV_FILE=""

# collectstatic needs settings that load with DEBUG=false, hence keys: random, made here,
# used by this one command and kept nowhere (not in ENV, ARG, a file or the history).
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DOCE_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    DOCE_DATA_DIR=/tmp/doce-build \
    DEBUG=false \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/doce-build

USER doce
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["uvicorn", "doce.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--lifespan", "off", "--timeout-graceful-shutdown", "5"]
