"""Training sets pinned to Delta versions: build one now, or rebuild a past one from its lineage.

Both paths run the same function with explicit versions, so a rebuild differs from the original
only if the data at those versions is gone or the code changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lakehouse.features.feature_store import FEATURE_SERVICE, SourcePin, feature_names, feature_refs, historical_features, service_sources
from lakehouse.ml.fingerprint import canonical_training_set, content_sha256
from lakehouse.ml.leakage import leakage_violations
from lakehouse.ml.lineage import InputTable, TrainingLineage
from lakehouse.tables.schemas import TRAINING_LABELS
from lakehouse.tables.storage import DeltaStore, read_table, table_row_count, table_version

LABELS_ROLE = "labels"


def current_inputs(delta: DeltaStore, feast_store, service_name: str = FEATURE_SERVICE) -> tuple[InputTable, ...]:
    """The labels table and every feature view's source table, each at its current version."""
    labels_uri = delta.uri(TRAINING_LABELS.name)
    inputs = [_input(LABELS_ROLE, TRAINING_LABELS.name, labels_uri)]
    for fv in service_sources(feast_store, service_name):
        uri = fv.batch_source.path
        inputs.append(_input(fv.name, uri.rstrip("/").rsplit("/", 1)[-1], uri))
    return tuple(inputs)


def _input(role: str, name: str, uri: str) -> InputTable:
    version = table_version(uri)
    if version is None:
        raise FileNotFoundError(f"input table {name} does not exist at {uri}")
    return InputTable(role=role, name=name, uri=uri, version=version, rows=table_row_count(uri, version))


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame  # canonical form: entity columns, label, features (see canonical_training_set)
    leakage: dict[str, dict[str, int]]  # per feature view, rows that saw a future or stale feature row


def build_training_set(feast_store, inputs: tuple[InputTable, ...], service_name: str = FEATURE_SERVICE) -> TrainingSet:
    """Labels at their pinned version, joined point-in-time to the service's features at theirs, and audited."""
    labels = next(t for t in inputs if t.role == LABELS_ROLE)
    entity_df = read_table(labels.uri, labels.version, list(TRAINING_LABELS.column_names)).to_pandas()  # + the join keys of other entities
    pins = [SourcePin(t.role, t.uri, t.version) for t in inputs if t.role != LABELS_ROLE]
    joined = historical_features(feast_store, entity_df, pins, service_name)
    ttls = {fv.name: fv.ttl for fv in service_sources(feast_store, service_name)}
    return TrainingSet(canonical_training_set(joined, feature_names(feast_store, service_name)), leakage_violations(joined, ttls))


def lineage_of(feast_store, training_set: pd.DataFrame, inputs: tuple[InputTable, ...], service_name: str = FEATURE_SERVICE) -> TrainingLineage:
    return TrainingLineage(
        inputs=inputs,
        training_set_sha256=content_sha256(training_set),
        training_set_rows=len(training_set),
        feature_service=service_name,
        feature_refs=tuple(feature_refs(feast_store, service_name)),
        feast_project=feast_store.project,
    )
