"""What trained a model, recorded in MLflow so that the training set can be rebuilt from a run id.

Every run carries, as tags and as MLflow dataset inputs, each input Delta table's URI, version and
row count, plus the training set's full SHA-256 and row count, the feature service and its feature
references, the Feast project, the git commit and the Dagster run. Tags are the source of truth for
reproduction: MLflow's own Delta dataset source drops version 0 and its dataset digest covers only
the first 10,000 rows. URIs are recorded without user info or query strings, where credentials
could hide; storage credentials live only in the environment and are never read here.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from lakehouse.config import REPO_ROOT

EXPERIMENT = "purchase_propensity"
REGISTERED_MODEL = "purchase_propensity"
TAG = "lakehouse"
SNAPSHOT_ARTIFACT = "training_set/training_set.parquet"


def public_uri(uri: str) -> str:
    """`uri` without user info, query or fragment: what may be written into MLflow and metadata."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive letter)
        return uri
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return uri  # nothing to remove; rebuilding it would turn sqlite:////abs into sqlite://abs
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


@dataclass(frozen=True)
class InputTable:
    role: str  # "labels" or the feature view the table feeds
    name: str
    uri: str
    version: int
    rows: int


@dataclass(frozen=True)
class TrainingLineage:
    inputs: tuple[InputTable, ...]
    training_set_sha256: str
    training_set_rows: int
    feature_service: str
    feature_refs: tuple[str, ...]  # "view:feature", in the service's order
    feast_project: str

    def to_tags(self) -> dict[str, str]:
        tags = {
            f"{TAG}.training_set.sha256": self.training_set_sha256,
            f"{TAG}.training_set.rows": str(self.training_set_rows),
            f"{TAG}.feature_service": self.feature_service,
            f"{TAG}.feature_refs": ",".join(self.feature_refs),
            f"{TAG}.feast_project": self.feast_project,
            f"{TAG}.inputs": ",".join(t.role for t in self.inputs),
        }
        for t in self.inputs:
            prefix = f"{TAG}.input.{t.role}"
            tags |= {f"{prefix}.table": t.name, f"{prefix}.uri": public_uri(t.uri), f"{prefix}.version": str(t.version), f"{prefix}.rows": str(t.rows)}
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> TrainingLineage:
        roles = [r for r in tags.get(f"{TAG}.inputs", "").split(",") if r]
        if not roles or f"{TAG}.training_set.sha256" not in tags:
            raise LookupError("this run has no lakehouse lineage tags (was it logged by the training asset?)")
        inputs = tuple(
            InputTable(
                role=role,
                name=tags[f"{TAG}.input.{role}.table"],
                uri=tags[f"{TAG}.input.{role}.uri"],
                version=int(tags[f"{TAG}.input.{role}.version"]),
                rows=int(tags[f"{TAG}.input.{role}.rows"]),
            )
            for role in roles
        )
        return cls(
            inputs=inputs,
            training_set_sha256=tags[f"{TAG}.training_set.sha256"],
            training_set_rows=int(tags[f"{TAG}.training_set.rows"]),
            feature_service=tags[f"{TAG}.feature_service"],
            feature_refs=tuple(r for r in tags.get(f"{TAG}.feature_refs", "").split(",") if r),
            feast_project=tags[f"{TAG}.feast_project"],
        )

    def input(self, role: str) -> InputTable:
        return next(t for t in self.inputs if t.role == role)


def git_state() -> dict[str, str]:
    """The code version: commit and whether the work tree had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"mlflow.source.git.commit": git("rev-parse", "HEAD"), f"{TAG}.git.dirty": str(bool(git("status", "--porcelain")))}
    except (OSError, subprocess.CalledProcessError):
        return {f"{TAG}.git.commit": "unknown"}


def dagster_tags(run_id: str, partition: str | None) -> dict[str, str]:
    return {"dagster.run_id": run_id, "dagster.partition": partition or "none"}


def log_lineage(lineage: TrainingLineage, extra_tags: dict[str, str]) -> dict[str, str]:
    """Inside an active run: tags plus one MLflow dataset input per Delta table version.

    Returns every tag set, so the registered model version can carry the same ones.
    """
    # imported here: `import mlflow` takes seconds, and `lakehouse runs` / `reproduce` read lineage without it
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    tags = lineage.to_tags() | git_state() | extra_tags
    mlflow.set_tags(tags)
    for t in lineage.inputs:
        # The version is in the name: MLflow keys datasets by (name, digest).
        source = DeltaDatasetSource(path=public_uri(t.uri), delta_table_version=t.version)
        mlflow.log_input(MetaDataset(source=source, name=f"{t.name}@v{t.version}"), context=t.role)
    return tags


def read_lineage(run) -> TrainingLineage:
    return TrainingLineage.from_tags(run.data.tags)


@dataclass(frozen=True)
class TableVersion:
    """One table at one version in a training run's lineage, `depth` steps below the training set."""

    depth: int
    table: str
    uri: str
    version: int


def upstream_of(uri: str, version: int, depth: int = 1) -> list[TableVersion]:
    """`uri` at `version`, then every table version its commit was computed from, depth first.

    Each commit records its inputs (lakehouse.tables.storage.INPUTS_KEY); the inputs live in the
    same Delta root. A table written before inputs were recorded ends its branch.
    """
    from lakehouse.tables.storage import DeltaStore  # deltalake: not needed to read a run's tags

    root, table = uri.rstrip("/").rsplit("/", 1)
    store = DeltaStore(root)
    chain = [TableVersion(depth, table, uri, version)]
    for name, input_version in sorted(store.commit_inputs(table, version).items() if store.version(table) is not None else []):
        chain += upstream_of(store.uri(name), input_version, depth + 1)
    return chain


def lineage_chain(lineage: TrainingLineage) -> list[tuple[str, list[TableVersion]]]:
    """For each input of a training set (by role), its table version and everything upstream of it, down to raw."""
    return [(t.role, upstream_of(t.uri, t.version)) for t in lineage.inputs]
