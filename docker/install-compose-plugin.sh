#!/bin/sh
# Compose v2 (`docker compose`, what the docker runtime runs) for a Debian 12 machine,
# whose own docker.io has no Compose plugin: Debian 13's docker-compose package (a Go
# binary that needs only libc), fetched with apt through a private sources list and state
# folder (the machine's apt configuration is left as it is; apt checks Debian's signature),
# and installed as /usr/local/lib/docker/cli-plugins/docker-compose. Run as root.
set -eu
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$work/sources.list"
set -- -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root
apt-get "$@" update -qq
(cd "$work" && apt-get "$@" download -qq docker-compose)
dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
install -D -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/docker-compose"
echo "installed $("$PLUGIN_DIR/docker-compose" version)"
