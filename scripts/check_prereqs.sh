#!/usr/bin/env bash
# Fails early, with a message a newcomer can act on, when a prerequisite the project cannot install
# for itself is missing: Python 3.11 and Java 17 (Spark runs on the JVM).
set -euo pipefail
python_bin="${PYTHON:-python3.11}"
fail() { printf 'prerequisite missing: %s\n' "$1" >&2; exit 1; }

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
