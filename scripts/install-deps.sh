#!/bin/sh
# Installs the Debian packages that rekey's build, demo and tests need,
# but only when one of them is missing, so `make demo` and `make check`
# cost nothing extra on a machine that already has them.
# Extra package names on the command line are added (make check-valgrind
# passes valgrind).  Runs apt-get as root (or through sudo when available).
# The browser tests need chromium and node with npm; node is taken from
# Debian (nodejs, npm) only when no node is installed at all, so a node
# from another source (e.g. NodeSource's nodejs, which brings its own npm)
# is left alone.
set -eu

PKGS="build-essential pkg-config
libuv1-dev libxml2-dev libxml2-utils libcurl4-openssl-dev
libsqlite3-dev sqlite3 zlib1g-dev libdeflate-dev libjansson-dev libmicrohttpd-dev
libssl-dev libpq-dev libinih-dev libcmocka-dev
postgresql python3 python3-pytest python3-jwcrypto
libsystemd-dev systemd groff-base
chromium
$*"
if ! command -v node >/dev/null 2>&1; then
    PKGS="$PKGS nodejs npm"
elif ! command -v npm >/dev/null 2>&1; then
    PKGS="$PKGS npm"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: missing packages:$missing; run as root or install them with apt-get" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
echo "install-deps: done" >&2
