#!/usr/bin/env bash
# What package indexes and mirrors this machine is configured with, so the image builds use the same ones
# (an internal mirror or proxy) and the repository never names a host.
#
#   images/host-index.sh pip index-url|extra-index-url|trusted-host
#       pip's setting of that name: $PIP_INDEX_URL / $PIP_EXTRA_INDEX_URL / $PIP_TRUSTED_HOST when set, else
#       `pip config list` (the [install] section before [global], as `pip install` reads them). Prints
#       nothing when nothing is configured: pip's own default then applies inside the build too. Indexes
#       that are paths on this host (file:// or a bare directory) cannot be seen from inside a build: they
#       are left out, with a note on stderr.
#   images/host-index.sh debian-mirror
#       $DEBIAN_MIRROR when set, else the first mirror of this host's apt sources that serves $SUITE
#       (default bookworm), else the first one that serves another Debian suite: one-line `deb URL suite
#       comps` entries in $APT_DIR/sources.list and $APT_DIR/sources.list.d/*.list, and deb822 entries
#       (`Types:`, `URIs:`, `Suites:`, `Enabled:`) in $APT_DIR/sources.list.d/*.sources. deb-src entries and
#       security suites are skipped: debootstrap needs the main archive. Fails, naming DEBIAN_MIRROR, when
#       there is none.
#
# Only the value goes to stdout (empty for an unset pip setting); notes go to stderr.
# PIP: the pip command to ask (default `python3 -m pip`); APT_DIR: where apt's sources are (default /etc/apt).
set -euo pipefail

PIP=${PIP:-python3 -m pip}
APT_DIR=${APT_DIR:-/etc/apt}
SUITE=${SUITE:-bookworm}
# Suites a Debian mirror serves; a mirror of any of them carries $SUITE too (an Ubuntu mirror does not).
DEBIAN_SUITES="buster bullseye bookworm trixie forky duke sid oldoldstable oldstable stable testing unstable"

log() { echo "host-index.sh: $*" >&2; }
usage() { log "usage: host-index.sh pip index-url|extra-index-url|trusted-host | debian-mirror"; exit 2; }
# The URL without user:password@, for messages.
redact() { sed -E 's#://[^/@]*@#://***@#' <<<"$1"; }

pip_setting() {  # $1: index-url | extra-index-url | trusted-host
    local key=$1 env_name value="" listing section word words kept=()
    env_name=PIP_$(tr 'a-z-' 'A-Z_' <<<"$key")
    value=${!env_name:-}
    if [ -z "$value" ]; then
        # `pip config list` prints section.key='value' lines; no pip at all is the same as nothing configured.
        listing=$($PIP config list 2>/dev/null) || listing=""
        for section in install global; do
            value=$(sed -n "s/^$section\.$key=//p" <<<"$listing" | tail -n 1)
            value=${value#[\'\"]}
            value=${value%[\'\"]}
            value=${value//\\n/ }  # a value over several lines is listed as 'a\nb'
            [ -n "$value" ] && break
        done
    fi
    read -ra words <<<"$value"
    for word in "${words[@]}"; do
        if [ "$key" != trusted-host ] && [[ ! "$word" =~ ^[A-Za-z][A-Za-z0-9+.-]*://[^/] ]]; then
            log "pip $key $(redact "$word") is a path on this host, which the build cannot see; left out"
            continue
        fi
        if [[ "$word" =~ ://[^/@]*@ ]]; then
            log "pip $key $(redact "$word") carries credentials: build arguments show in the build log and \`docker history\`"
        fi
        kept+=("$word")
    done
    echo "${kept[*]}"
}

apt_entries() {  # "URL SUITE" for every deb (not deb-src) entry of the host's apt sources, in apt's order
    local file
    for file in "$APT_DIR/sources.list" "$APT_DIR"/sources.list.d/*; do
        [ -f "$file" ] || continue
        case "$file" in
            *.list)
                # deb [option=value ...] URL suite component...
                awk '{ sub(/#.*/, ""); gsub(/\[[^]]*\]/, "") } $1 == "deb" && NF >= 3 { print $2, $3 }' "$file" ;;
            *.sources)
                # deb822 stanzas separated by blank lines; continuation lines (leading space) belong to the
                # field above (a Signed-By key, say) and are none of the fields read here.
                awk '
                    function flush(   nu, ns, i, j, u, s) {
                        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^(no|false)$/) {
                            nu = split(uris, u); ns = split(suites, s)
                            for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
                        }
                        types = uris = suites = enabled = ""
                    }
                    /^#/ { next }
                    /^[ \t]*$/ { flush(); next }
                    /^[ \t]/ { next }
                    {
                        name = tolower($0); sub(/[ \t]*:.*/, "", name)
                        value = $0; sub(/^[^:]*:[ \t]*/, "", value)
                        if (name == "types") types = value
                        else if (name == "uris") uris = value
                        else if (name == "suites") suites = value
                        else if (name == "enabled") enabled = tolower(value)
                    }
                    END { flush() }
                ' "$file" ;;
        esac
    done
}

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"; return
    fi
    local url suite base exact="" debian="" seen=()
    while read -r url suite; do
        case "$url" in http://* | https://* | file:/*) ;; *) continue ;; esac
        case "$suite" in *-security | */updates) continue ;; esac
        seen+=("$(redact "$url") $suite")
        base=${suite%%[-/]*}
        if [ "$base" = "$SUITE" ] && [ -z "$exact" ]; then
            exact=$url
        elif [[ " $DEBIAN_SUITES " == *" $base "* ]] && [ -z "$debian" ]; then
            debian=$url
        fi
    done < <(apt_entries)
    if [ -n "$exact" ]; then
        echo "${exact%/}"
    elif [ -n "$debian" ]; then
        log "no apt source for $SUITE; using $(redact "$debian"), a Debian mirror for another suite"
        echo "${debian%/}"
    else
        log "no Debian mirror in $APT_DIR/sources.list or $APT_DIR/sources.list.d/" \
            "(${#seen[@]} other source(s)${seen[*]:+: ${seen[*]}}); set DEBIAN_MIRROR to the Debian archive to bootstrap from"
        exit 1
    fi
}

case "${1:-}" in
    pip)
        case "${2:-}" in index-url | extra-index-url | trusted-host) pip_setting "$2" ;; *) usage ;; esac ;;
    debian-mirror) debian_mirror ;;
    *) usage ;;
esac
