#!/usr/bin/env bash
# Fails early, with a message a newcomer can act on, when a prerequisite the project cannot install
# for itself is missing: Python 3.11 and Java 17 (Spark runs on the JVM).
# `check_prereqs.sh chromium` instead makes sure the browser the UI tests drive is there: Debian's
# chromium package, installed with apt-get (through sudo when not root) when it is missing.
set -euo pipefail
python_bin="${PYTHON:-python3.11}"
fail() { printf 'prerequisite missing: %s\n' "$1" >&2; exit 1; }

# `check_prereqs.sh servers`: the Debian packages of the cluster profile's servers (Redis, PostgreSQL),
# installed with apt-get when missing, like chromium below.
apt_install() {  # apt_install <command that must exist afterwards> <package>...
  local wanted=$1; shift
  command -v apt-get >/dev/null 2>&1 \
    || fail "$wanted not found and there is no apt-get to install it. Install: $*"
  local as_root=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "$wanted not found. Install it as root: apt-get install -y $*"
    as_root=(sudo)
  fi
  printf 'installing Debian packages: %s\n' "$*" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package lists of a fresh machine may be missing or stale: update them only if the install needs it.
  "${as_root[@]}" apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq "$@" >/dev/null; } \
    || fail "could not install $*. Install them as root: apt-get install -y $*"
}

if [ "${1:-}" = "servers" ]; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-server
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null 2>&1 \
    || apt_install postgres postgresql
  # The Debian packages start their own servers on the default ports: the project starts its own.
  exit 0
fi

if [ "${1:-}" = "chromium" ]; then
  # LAKEHOUSE_CHROMIUM names another Chromium binary (the tests read it too).
  chromium_bin="${LAKEHOUSE_CHROMIUM:-chromium}"
  command -v "$chromium_bin" >/dev/null 2>&1 && exit 0
  [ -z "${LAKEHOUSE_CHROMIUM:-}" ] \
    || fail "LAKEHOUSE_CHROMIUM=$LAKEHOUSE_CHROMIUM is not an executable. Point it at a Chromium binary or unset it."
  apt_install chromium chromium  # the browser tests drive it
  command -v chromium >/dev/null 2>&1 || fail "apt-get installed chromium but there is no chromium on PATH."
  exit 0
fi

command -v "$python_bin" >/dev/null 2>&1 \
  || fail "$python_bin not found on PATH. Install Python 3.11 (or set PYTHON=/path/to/python3.11)."
"$python_bin" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || fail "$python_bin is $("$python_bin" -V 2>&1), the project needs Python 3.11."

java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
command -v "$java_bin" >/dev/null 2>&1 \
  || fail "java not found. Install a Java 17 runtime (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
java_major=$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
[ "$java_major" = "17" ] \
  || fail "Spark 4.2 here is tested with Java 17, found Java ${java_major:-unknown}. Set JAVA_HOME to a Java 17."
