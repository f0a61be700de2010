"""The dbt project and the dbt CLI of this environment."""

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from lakehouse.config import REPO_ROOT

DBT_DIR = REPO_ROOT / "dbt"
# The dbt next to this interpreter, not whichever one is first on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
# profiles.yml finds the delta_writer plugin through this variable, whatever the working directory.
os.environ.setdefault("DBT_PROJECT_DIR", str(DBT_DIR))

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def _sources_changed_since(path: Path) -> bool:
    sources = [
        DBT_DIR / "dbt_project.yml",
        DBT_DIR / "profiles.yml",
        *DBT_DIR.glob("models/**/*"),
        *DBT_DIR.glob("macros/**/*"),
    ]
    built = path.stat().st_mtime
    return any(p.stat().st_mtime > built for p in sources if p.is_file())


def dbt_manifest() -> Path:
    """dagster-dbt reads the manifest when the code loads: parse the project only if the manifest is missing or stale.

    `make setup` (and so `make dev` and `make test`) parses first, whenever a dbt file changed, so
    loading the code does not: a parse costs seconds to minutes on a busy machine, and `dagster dev`
    gives up on a slow code server.
    """
    manifest = dbt_project.manifest_path
    if not manifest.exists() or _sources_changed_since(manifest):
        subprocess.run(
            [DBT_EXECUTABLE, "parse", "--quiet", "--profiles-dir", str(DBT_DIR)],
            cwd=DBT_DIR,
            check=True,
        )
    return dbt_project.manifest_path


def dbt_cli() -> DbtCliResource:
    return DbtCliResource(
        project_dir=dbt_project, profiles_dir=str(DBT_DIR), dbt_executable=DBT_EXECUTABLE
    )
