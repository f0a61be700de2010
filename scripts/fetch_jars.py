"""Put the Delta Lake jars Spark needs into the virtualenv's pyspark/jars folder.

No PyPI package ships them, so they come from a Maven repository (Maven Central by default,
MAVEN_REPO_URL to use a mirror). Every jar is checked against the SHA-256 pinned below, so this
file is the lock for the JVM side. A copy already in ~/.m2 is used without a download.
Jars placed in pyspark/jars are on the classpath of every SparkSession of this environment,
including the ones Feast's CLI starts, so no session needs a `spark.jars` setting.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request
from pathlib import Path

# delta-spark 4.4.1 is on PyPI, but its jars were never published to Maven Central;
# 4.4.0 is the newest Delta build for Spark 4.2 there.
DELTA_JARS = {
    ("io.delta", "delta-spark_4.2_2.13", "4.4.0"): "27d4fd8b1f879535c573ed1c718177d6a27f24d3e626ba02e216369725721ead",
    ("io.delta", "delta-storage", "4.4.0"): "c46735481fa8e326b0957be02b4420cbcab4b325bb08009b7f2045a95133f1cc",
}
DEFAULT_REPO = "https://repo.maven.apache.org/maven2"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _relative_path(group: str, artifact: str, version: str) -> str:
    return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


def fetch(target_dir: Path) -> None:
    repo = os.environ.get("MAVEN_REPO_URL", DEFAULT_REPO).rstrip("/")
    m2 = Path.home() / ".m2" / "repository"
    for (group, artifact, version), expected in DELTA_JARS.items():
        rel = _relative_path(group, artifact, version)
        target = target_dir / Path(rel).name
        if target.exists() and _sha256(target) == expected:
            continue
        cached = m2 / rel
        if cached.exists() and _sha256(cached) == expected:
            shutil.copyfile(cached, target)
        else:
            print(f"downloading {repo}/{rel}", file=sys.stderr)
            tmp = target.with_suffix(".part")
            with urllib.request.urlopen(f"{repo}/{rel}", timeout=120) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
            actual = _sha256(tmp)
            if actual != expected:
                tmp.unlink()
                sys.exit(f"checksum mismatch for {rel}: expected {expected}, got {actual}")
            tmp.replace(target)
    print(f"Delta jars ready in {target_dir}")


if __name__ == "__main__":
    import pyspark

    fetch(Path(pyspark.__file__).parent / "jars")
