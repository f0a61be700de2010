"""What trained a model, recorded in MLflow so that the training set can be rebuilt from a run id.

Every run carries, as tags and as MLflow dataset inputs, each input Delta table's URI, version and
row count, plus the training set's full SHA-256, the form it was taken over (lakehouse.ml.fingerprint;
a run without that tag used the Arrow IPC form) and row count, the feature service and its feature
references, the Feast project, the git commit and the Dagster run. Tags are the source of truth for
reproduction: MLflow's own Delta dataset source drops version 0 and its dataset digest covers only
the first 10,000 rows. The dataset inputs are what the MLflow UI shows: each table's source (public
URI and Delta version), schema (its columns) and profile (rows), none of it read from the data.
URIs are recorded without user info or query strings, where credentials could hide; storage
credentials live only in the environment and are never read here.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

from lakehouse.config import REPO_ROOT, public_uri
from lakehouse.ml.fingerprint import ARROW_IPC, CURRENT_FORM

EXPERIMENT = "purchase_propensity"
REGISTERED_MODEL = "purchase_propensity"
TAG = "lakehouse"
SNAPSHOT_ARTIFACT = "training_set/training_set.parquet"
HASH_FORM_TAG = f"{TAG}.training_set.hash_form"
# Commits that rewrite files or settings without changing the rows (table maintenance makes them):
# the rows of their version were computed from what the data commit before them recorded.
_SAME_ROWS_OPERATIONS = frozenset({"OPTIMIZE", "SET TBLPROPERTIES", "VACUUM START", "VACUUM END"})


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
    training_set_hash_form: str = CURRENT_FORM  # the byte form training_set_sha256 was taken over

    def to_tags(self) -> dict[str, str]:
        tags = {
            f"{TAG}.training_set.sha256": self.training_set_sha256,
            HASH_FORM_TAG: self.training_set_hash_form,
            f"{TAG}.training_set.rows": str(self.training_set_rows),
            f"{TAG}.feature_service": self.feature_service,
            f"{TAG}.feature_refs": ",".join(self.feature_refs),
            f"{TAG}.feast_project": self.feast_project,
            f"{TAG}.inputs": ",".join(t.role for t in self.inputs),
        }
        for t in self.inputs:
            prefix = f"{TAG}.input.{t.role}"
            tags |= {
                f"{prefix}.table": t.name,
                f"{prefix}.uri": public_uri(t.uri),
                f"{prefix}.version": str(t.version),
                f"{prefix}.rows": str(t.rows),
            }
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> TrainingLineage:
        roles = [r for r in tags.get(f"{TAG}.inputs", "").split(",") if r]
        if not roles or f"{TAG}.training_set.sha256" not in tags:
            raise LookupError(
                "this run has no lakehouse lineage tags (was it logged by the training asset?)"
            )
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
            training_set_hash_form=tags.get(
                HASH_FORM_TAG, ARROW_IPC
            ),  # runs logged before forms were recorded
        )

    def input(self, role: str) -> InputTable:
        return next(t for t in self.inputs if t.role == role)


def git_state() -> dict[str, str]:
    """The code version: commit and whether the work tree had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "mlflow.source.git.commit": git("rev-parse", "HEAD"),
            f"{TAG}.git.dirty": str(bool(git("status", "--porcelain"))),
        }
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

    tags = lineage.to_tags() | git_state() | extra_tags
    mlflow.set_tags(tags)
    inputs = list(lineage.inputs)
    mlflow.log_inputs(
        [input_dataset(t) for t in inputs],
        contexts=[t.role for t in inputs],
        tags_list=[None] * len(inputs),
    )
    return tags


def input_dataset(table: InputTable):
    """One input table as an MLflow dataset, named `<table>@v<version>` (MLflow keys datasets by name and digest).

    Source: the public URI and the Delta version. Schema: the table's columns. Profile: its rows
    (from the lineage, counted from the Delta log) and version. Nothing is read from the data.
    """
    from mlflow.types import ColSpec, Schema

    source_cls, dataset_cls = _dataset_classes()
    columns = _arrow_schema(table)
    schema = Schema(
        [ColSpec(_mlflow_type(f.type), f.name, required=not f.nullable) for f in columns]
    )
    profile = {"num_rows": table.rows, "num_columns": len(columns), "delta_version": table.version}
    return dataset_cls(
        source_cls(public_uri(table.uri), table.version),
        name=f"{table.name}@v{table.version}",
        schema=schema,
        profile=profile,
    )


def _arrow_schema(table: InputTable):
    """The table's columns: its TableSchema (lakehouse.tables.schemas) by name, else the Delta log's at the
    pinned version."""
    from lakehouse.tables import schemas

    known = {s.name: s for s in vars(schemas).values() if isinstance(s, schemas.TableSchema)}
    if table.name in known:
        return known[table.name].arrow()
    from lakehouse.tables.storage import (
        read_dataset,
    )  # deltalake: only for a table this project has no schema of

    return read_dataset(table.uri, table.version).schema  # the log's metadata, no data file is read


def _mlflow_type(arrow_type) -> str:
    """The MLflow column type of an Arrow type (dates and timestamps are both `datetime` to MLflow)."""
    import pyarrow.types as pat

    if pat.is_boolean(arrow_type):
        return "boolean"
    if pat.is_integer(arrow_type):
        return "integer" if arrow_type.bit_width <= 32 else "long"
    if pat.is_float32(arrow_type):
        return "float"
    if pat.is_floating(arrow_type) or pat.is_decimal(arrow_type):
        return "double"
    if pat.is_binary(arrow_type) or pat.is_large_binary(arrow_type):
        return "binary"
    if pat.is_temporal(arrow_type):
        return "datetime"
    return "string"  # strings, and anything nested, which no input table has


@functools.cache
def _dataset_classes():
    """The MLflow dataset source and dataset of an input table, defined on first use: mlflow is not imported
    with this module."""
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class DeltaVersionSource(DatasetSource):
        """A Delta table at one version, as `{"uri", "delta_table_version"}`.

        Its type is where it lives, as for MLflow's own file sources ("local" for a path, else the
        URI's scheme: "s3", ...), because the MLflow UI shows the location of those source types and
        nothing for "delta_table". Unlike MLflow's DeltaDatasetSource, it keeps version 0.
        """

        def __init__(self, uri: str, version: int):
            self.uri, self.version = uri, version

        # MLflow declares it static; it is only ever called on a source, and ours depends on its URI.
        def _get_source_type(self) -> str:  # type: ignore[override]
            scheme = urlsplit(self.uri).scheme
            return "local" if len(scheme) <= 1 or scheme == "file" else scheme

        def load(self):
            """The table at its version, as a lazy pyarrow dataset."""
            from lakehouse.tables.storage import read_dataset

            return read_dataset(self.uri, self.version)

        @staticmethod
        def _can_resolve(raw_source) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source):
            raise NotImplementedError(
                "a Delta table version is given explicitly, never resolved from a raw source"
            )

        def to_dict(self) -> dict:
            return {"uri": self.uri, "delta_table_version": self.version}

        @classmethod
        def from_dict(cls, source_dict: dict):
            return cls(source_dict["uri"], int(source_dict["delta_table_version"]))

    class DeltaVersionDataset(MetaDataset):
        """MetaDataset (source, name, schema; digest of those) plus a profile given, not computed from data."""

        def __init__(self, source, name: str, schema, profile: dict):
            self._profile = profile
            super().__init__(source=source, name=name, schema=schema)

        @property
        def profile(self) -> dict:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return super().to_dict() | {"profile": json.dumps(self._profile)}

    return DeltaVersionSource, DeltaVersionDataset


def read_lineage(run) -> TrainingLineage:
    return TrainingLineage.from_tags(run.data.tags)


@dataclass(frozen=True)
class TableVersion:
    """One table at one version in a training run's lineage, `depth` steps below the training set."""

    depth: int
    table: str
    uri: str
    version: int


def computed_from(
    uri: str, version: int, storage_options: dict[str, str] | None = None
) -> dict[str, int] | None:
    """The input tables and versions the rows of `uri` at `version` were computed from, or None if unknown.

    Those the newest commit at or before `version` that wrote rows recorded (INPUTS_KEY); a
    compaction or a settings change since then changed no row. None when that commit recorded
    nothing: a table written before inputs were recorded, or by another writer.
    """
    from lakehouse.tables.storage import (
        INPUTS_KEY,
        DeltaStore,
    )  # deltalake: not needed to read a run's tags

    root, table = uri.rstrip("/").rsplit("/", 1)
    store = DeltaStore(root, storage_options)
    # Usually the commit of `version` itself: read no more of the log than needed.
    for limit in (1, 16, None):
        commits = store.history(table, version, limit)
        for commit in commits:
            if INPUTS_KEY in commit:
                return json.loads(commit[INPUTS_KEY])
            if commit.get("operation") not in _SAME_ROWS_OPERATIONS:
                return None
        if limit is None or len(commits) < limit:
            break  # the first commit of the log, and it wrote no rows
    return None


def upstream_of(uri: str, version: int, depth: int = 1) -> list[TableVersion]:
    """`uri` at `version`, then every table version its rows were computed from, depth first.

    Each commit records its inputs (lakehouse.tables.storage.INPUTS_KEY); the inputs live in the
    same Delta root. A table written before inputs were recorded ends its branch.
    """
    from lakehouse.tables.storage import table_version  # deltalake: not needed to read a run's tags

    root = uri.rstrip("/").rsplit("/", 1)[0]
    chain = [TableVersion(depth, uri.rstrip("/").rsplit("/", 1)[1], uri, version)]
    inputs = computed_from(uri, version) if table_version(uri) is not None else None
    for name, input_version in sorted((inputs or {}).items()):
        chain += upstream_of(f"{root}/{name}", input_version, depth + 1)
    return chain


def lineage_chain(lineage: TrainingLineage) -> list[tuple[str, list[TableVersion]]]:
    """For each input of a training set (by role), its table version and everything upstream of it, down to raw."""
    return [(t.role, upstream_of(t.uri, t.version)) for t in lineage.inputs]
