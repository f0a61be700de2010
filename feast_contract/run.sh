#!/usr/bin/env bash
# Feast's universal offline-store suite (sdk/python/tests/integration/offline_store) against the
# Delta offline store. Usage: feast_contract/run.sh <checkout of feast-dev/feast> [pytest args]
#
# The suite's own test dependencies go into a side environment that sees the project's packages
# through a .pth file, so the project's locked environment is left as it is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
feast_src=$(cd "${1:?usage: feast_contract/run.sh <checkout of feast-dev/feast> [pytest args]}" && pwd)
shift
side="$root/.tools/feast-contract"
if [ ! -x "$side/bin/python" ]; then
  "$root/.tools/bin/uv" venv --quiet --python "$root/.venv/bin/python" "$side"
  site=$("$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  printf '%s\n%s\n' "$site" "$root" > "$side/lib/python3.11/site-packages/zz_lakehouse.pth"
fi
# A no-op once they are there.
"$root/.tools/bin/uv" pip install --quiet --python "$side/bin/python" \
  testcontainers==4.15.0 minio==7.2.20 python-keycloak==7.1.1 pytest-env==1.8.5 pytest-asyncio==1.5.0 \
  pytest-mock==3.17.0 pytest-xdist==3.8.0 assertpy==1.1 great-expectations==0.18.22
cd "$feast_src/sdk/python"
export PYTHONPATH="$feast_src/sdk/python:$root/feast_contract:$root"
export FULL_REPO_CONFIGS_MODULE=delta_repo_configuration FEAST_IS_LOCAL_TEST=True IS_TEST=True
exec "$side/bin/python" -m pytest -p no:cacheprovider --integration tests/integration/offline_store -o addopts="" -W ignore::DeprecationWarning -rs "$@"
