#!/usr/bin/env bash
# Make sure a Docker engine answers, so `make images` / `make test-containers` work on a fresh machine.
#
#   images/engine.sh
#
# 1. `docker info` answers                      -> nothing to do (a desktop Docker, a CI service, ...)
# 2. otherwise, as root on Debian/Ubuntu        -> apt-get install docker.io (the engine) and debootstrap (for
#    images/base.sh) when missing, then start `dockerd --iptables=false --bridge=none` in the background
#    (log: $DOCKERD_LOG) and wait until it answers. No iptables and no bridge: a sandbox without those kernel
#    features runs it as it is, and every build and container here uses the host network anyway.
# 3. otherwise                                  -> say what to do, exit 1.
set -euo pipefail

DOCKER=${DOCKER:-docker}
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/finegrain-dockerd.log}
WAIT_S=${WAIT_S:-60}

log() { echo "engine.sh: $*" >&2; }

if $DOCKER info >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "no Docker engine answers; start one (or run this as root on Debian/Ubuntu to have it set up)"
    exit 1
fi
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
log "starting dockerd --iptables=false --bridge=none (log: $DOCKERD_LOG)"
setsid nohup dockerd --iptables=false --bridge=none >"$DOCKERD_LOG" 2>&1 < /dev/null &
for _ in $(seq "$WAIT_S"); do
    if $DOCKER info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
log "dockerd did not answer within $WAIT_S s; see $DOCKERD_LOG"
tail -20 "$DOCKERD_LOG" >&2 || true
exit 1
