#!/bin/sh
# doce container entrypoint (web, preview, worker, beat and the one-shot migrate service).
#
#   entrypoint.sh migrate        apply database migrations, then exit
#   entrypoint.sh COMMAND ...    run COMMAND (uvicorn, celery, manage.py ...) as PID 1's child
#
# Migrations run in their own one-shot service (see docker-compose.yml) rather than in
# front of the web server: the worker then never sees a half-migrated schema, and scaling web to
# several replicas never runs two migrations at once.
set -eu

data_dir="${DOCE_DATA_DIR:-/var/lib/doce}"
if [ "${DOCE_DATA_READ_ONLY:-false}" = "true" ]; then
    # The preview service: it only reads the data volume, mounted read-only.
    if [ ! -d "$data_dir" ] || [ ! -r "$data_dir" ] || [ ! -x "$data_dir" ]; then
        echo "doce: DOCE_DATA_DIR=$data_dir is not readable by user $(id -un) (uid $(id -u))." >&2
        echo "doce: mount the data volume there (read-only is enough for this service)." >&2
        exit 1
    fi
elif ! mkdir -p "$data_dir" 2>/dev/null || [ ! -w "$data_dir" ]; then
    echo "doce: DOCE_DATA_DIR=$data_dir is not writable by user $(id -un) (uid $(id -u))." >&2
    echo "doce: mount a named volume there, or chown a bind-mounted folder to uid $(id -u)." >&2
    exit 1
fi

if [ "$#" -eq 0 ]; then
    echo "doce: no command given (try: migrate, uvicorn ..., celery ...)." >&2
    exit 64
fi

if [ "$1" = "migrate" ]; then
    shift
    exec python manage.py migrate --noinput "$@"
fi

exec "$@"
