"""What trained a model, recorded in MLflow so that the training set can be rebuilt from a run id.

Every run carries, as tags and as MLflow dataset inputs, each input Delta table's URI, version and
row count, plus the training set's full SHA-256 and row count, the feature service, the Feast
project and the git commit. Tags are the source of truth for reproduction: MLflow's own Delta
dataset source drops version 0 and its dataset digest covers only the first 10,000 rows.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import mlflow
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.meta_dataset import MetaDataset

from lakehouse.config import REPO_ROOT

EXPERIMENT = "purchase_propensity"
TAG = "lakehouse"


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
    feast_project: str

    def to_tags(self) -> dict[str, str]:
        tags = {
            f"{TAG}.training_set.sha256": self.training_set_sha256,
            f"{TAG}.training_set.rows": str(self.training_set_rows),
            f"{TAG}.feature_service": self.feature_service,
            f"{TAG}.feast_project": self.feast_project,
            f"{TAG}.inputs": ",".join(t.role for t in self.inputs),
        }
        for t in self.inputs:
            prefix = f"{TAG}.input.{t.role}"
            tags |= {f"{prefix}.table": t.name, f"{prefix}.uri": t.uri, f"{prefix}.version": str(t.version), f"{prefix}.rows": str(t.rows)}
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


def log_lineage(lineage: TrainingLineage) -> None:
    """Inside an active run: tags plus one MLflow dataset input per Delta table version."""
    mlflow.set_tags(lineage.to_tags() | git_state())
    for t in lineage.inputs:
        # The version is in the name: MLflow keys datasets by (name, digest).
        source = DeltaDatasetSource(path=t.uri, delta_table_version=t.version)
        mlflow.log_input(MetaDataset(source=source, name=f"{t.name}@v{t.version}"), context=t.role)


def read_lineage(run) -> TrainingLineage:
    return TrainingLineage.from_tags(run.data.tags)
