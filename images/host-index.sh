#!/usr/bin/env bash
# What package indexes and mirrors this machine is configured with, so the image builds use the same ones
# (an internal mirror or proxy) and the repository never names a host.
#
#   images/host-index.sh pip index-url|extra-index-url|trusted-host
#       pip's setting of that name: $PIP_INDEX_URL / $PIP_EXTRA_INDEX_URL / $PIP_TRUSTED_HOST when set, else
#       `pip config list` (the [install] section before [global], as `pip install` reads them). Prints
#       nothing when nothing is configured: pip's own default then applies inside the build too. Indexes
#       that are paths on this host (file:// or a bare directory) cannot be seen from inside a build: they
#       are left out (`pip left-out` names them).
#   images/host-index.sh pip left-out
#       One line naming this host's pip settings that the builds do not get, and why: index URLs that are
#       paths on this host, and find-links, constraint, no-index and proxy (the builds take only index-url,
#       extra-index-url and trusted-host). Nothing when every setting that picks packages is passed.
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
usage() { log "usage: host-index.sh pip index-url|extra-index-url|trusted-host|left-out | debian-mirror"; exit 2; }
# The URL without user:password@, for messages.
redact() { sed -E 's#://[^/@]*@#://***@#' <<<"$1"; }

# `pip config list` prints section.key='value' lines; no pip at all is the same as nothing configured. Read
# once, in the pip branch below, so that `pip left-out` asks pip once for all its settings.
PIP_LISTING=""
load_pip_listing() { PIP_LISTING=$($PIP config list 2>/dev/null) || PIP_LISTING=""; }

pip_value() {  # $1: a pip setting; its value as `pip install` reads it: $PIP_<SETTING>, [install], [global]
    local key=$1 env_name value="" section
    env_name=PIP_$(tr 'a-z-' 'A-Z_' <<<"$key")
    value=${!env_name:-}
    if [ -z "$value" ]; then
        for section in install global; do
            value=$(sed -n "s/^$section\.$key=//p" <<<"$PIP_LISTING" | tail -n 1)
            value=${value#[\'\"]}
            value=${value%[\'\"]}
            value=${value//\\n/ }  # a value over several lines is listed as 'a\nb'
            [ -n "$value" ] && break
        done
    fi
    echo "$value"
}

# A location only this host can read: a file: URL, or no URL at all (a directory, a file).
host_path() { [[ "$1" =~ ^[Ff][Ii][Ll][Ee]: || ! "$1" =~ ^[A-Za-z][A-Za-z0-9+.-]*://[^/] ]]; }

pip_setting() {  # $1: index-url | extra-index-url | trusted-host
    local key=$1 word words kept=()
    read -ra words <<<"$(pip_value "$key")"
    for word in "${words[@]}"; do
        if [ "$key" != trusted-host ] && host_path "$word"; then
            continue  # `pip left-out` says so
        fi
        if [[ "$word" =~ ://[^/@]*@ ]]; then
            log "pip $key $(redact "$word") carries credentials: build arguments show in the build log and \`docker history\`"
        fi
        kept+=("$word")
    done
    echo "${kept[*]}"
}

pip_left_out() {
    local key value word words paths left=""
    for key in index-url extra-index-url find-links constraint no-index proxy; do
        value=$(pip_value "$key")
        case "$key" in
            index-url | extra-index-url)
                paths=""
                read -ra words <<<"$value"
                for word in "${words[@]}"; do
                    host_path "$word" && paths+=" $(redact "$word")"
                done
                value=${paths# } ;;
            no-index)
                case "${value,,}" in 0 | false | no | off) value="" ;; esac ;;
            *) value=$(redact "$value") ;;
        esac
        [ -n "$value" ] && left+="${left:+; }$key $value"
    done
    if [ -n "$left" ]; then
        echo "this host's pip settings not passed to the image builds: $left (a build cannot see paths on this" \
            "host, and takes only pip's index-url, extra-index-url and trusted-host)"
    fi
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
        case "${2:-}" in
            index-url | extra-index-url | trusted-host) load_pip_listing; pip_setting "$2" ;;
            left-out) load_pip_listing; pip_left_out ;;
            *) usage ;;
        esac ;;
    debian-mirror) debian_mirror ;;
    *) usage ;;
esac
