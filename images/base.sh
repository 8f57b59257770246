#!/usr/bin/env bash
# Print the base image to build FROM, making sure it exists in the local Docker engine.
#
#   images/base.sh [WANTED]        WANTED defaults to python:3.11.14-slim-bookworm
#
# 1. WANTED is already in the engine            -> print WANTED
# 2. `docker pull WANTED` succeeds (timed out)  -> print WANTED
# 3. otherwise (no registry reachable)          -> debootstrap Debian bookworm with python3.11, venv, pip and
#    ca-certificates, `docker import` it as $LOCAL_BASE (once; reused afterwards) and print $LOCAL_BASE.
#
# Only the image name goes to stdout, so `make images` can use `$(images/base.sh)`; progress goes to stderr.
# The bootstrapped base trusts the same extra CAs as this host (/usr/local/share/ca-certificates/*.crt), so
# pip inside `docker build` works behind a TLS-intercepting proxy just as pip on the host does.
# Needs root (debootstrap) and the debootstrap package. The mirror is $DEBIAN_MIRROR or, unset, the Debian
# mirror this host's apt uses (images/host-index.sh debian-mirror reads /etc/apt, or $APT_DIR).
set -euo pipefail

WANTED=${1:-python:3.11.14-slim-bookworm}
LOCAL_BASE=${LOCAL_BASE:-finegrain-base:bookworm-py311}
SUITE=${SUITE:-bookworm}
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}
DOCKER=${DOCKER:-docker}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "base.sh: $*" >&2; }

if $DOCKER image inspect "$WANTED" >/dev/null 2>&1; then
    echo "$WANTED"; exit 0
fi
if [ "${SKIP_PULL:-0}" != 1 ] && timeout "$PULL_TIMEOUT" $DOCKER pull "$WANTED" >&2 2>/dev/null; then
    echo "$WANTED"; exit 0
fi
if $DOCKER image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    log "cannot pull $WANTED; using the bootstrapped $LOCAL_BASE"
    echo "$LOCAL_BASE"; exit 0
fi

command -v debootstrap >/dev/null || { log "cannot pull $WANTED and debootstrap is missing (apt-get install debootstrap)"; exit 1; }
[ "$(id -u)" = 0 ] || { log "cannot pull $WANTED; bootstrapping a base needs root (debootstrap)"; exit 1; }

DEBIAN_MIRROR=$(SUITE=$SUITE "$HERE/host-index.sh" debian-mirror) || {
    log "cannot pull $WANTED, and there is no Debian mirror to bootstrap a base from (set DEBIAN_MIRROR)"; exit 1; }
log "cannot pull $WANTED; bootstrapping $LOCAL_BASE from $DEBIAN_MIRROR ($SUITE)"
ROOTFS=$(mktemp -d /tmp/finegrain-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >&2

# The images call `python` (like the python:* images); Debian only ships python3.
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
if compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
    cp "$EXTRA_CA_DIR"/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >&2
fi
# apt lists and caches are rebuilt by any later `apt-get update`; keep the base small.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*

tar -C "$ROOTFS" -c . | $DOCKER import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $SUITE minbase + python3 venv pip ca-certificates (images/base.sh)" \
    - "$LOCAL_BASE" >&2
echo "$LOCAL_BASE"
