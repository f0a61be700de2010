"""Training sets pinned to Delta versions: build one now, or rebuild a past one from its lineage.

Both paths run the same function with explicit tables and versions, so a rebuild differs from the
original only if the data at those versions is gone or the code changed.

A new training set is built only from tables computed from one `cleaned_events` version: the labels
and the features of one state of the events (`shared_cleaned_events_version`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lakehouse.features.feature_store import (
    FEATURE_SERVICE,
    SourcePin,
    feature_names,
    feature_refs,
    historical_features,
    service_sources,
)
from lakehouse.ml.fingerprint import CURRENT_FORM, canonical_training_set, content_sha256
from lakehouse.ml.leakage import leakage_violations
from lakehouse.ml.lineage import InputTable, TrainingLineage, computed_from
from lakehouse.tables.schemas import TRAINING_LABELS
from lakehouse.tables.storage import DeltaStore, read_table, table_row_count, table_version

LABELS_ROLE = "labels"
CLEANED_EVENTS = "cleaned_events"


class MixedInputVersionsError(ValueError):
    """The training tables were not all computed from one cleaned_events version: nothing is trained."""


def current_inputs(
    delta: DeltaStore, feast_store, service_name: str = FEATURE_SERVICE
) -> tuple[InputTable, ...]:
    """The labels table and every feature view's source table, each at its current version, all computed
    from one cleaned_events version (else MixedInputVersionsError)."""
    labels_uri = delta.uri(TRAINING_LABELS.name)
    inputs = [_input(LABELS_ROLE, TRAINING_LABELS.name, labels_uri)]
    for fv in service_sources(feast_store, service_name):
        uri = fv.batch_source.path
        inputs.append(_input(fv.name, uri.rstrip("/").rsplit("/", 1)[-1], uri))
    shared_cleaned_events_version(tuple(inputs), delta.storage_options)  # raises unless they agree
    return tuple(inputs)


def shared_cleaned_events_version(
    inputs: tuple[InputTable, ...], storage_options: dict[str, str] | None = None
) -> int:
    """The one cleaned_events version every input table at its version was computed from.

    Raises MixedInputVersionsError, one line naming each table and its cleaned_events version, when
    they differ, or when a table cannot say: its data commit recorded no cleaned_events version (a
    table written before input versions were recorded, or by another writer). Such a table is never
    taken to agree: rematerializing it with the others records the version. Compaction and other
    commits that change no row do not count (see lakehouse.ml.lineage.computed_from).
    """
    versions = {
        t: (computed_from(t.uri, t.version, storage_options) or {}).get(CLEANED_EVENTS)
        for t in inputs
    }
    if len(set(versions.values())) == 1 and None not in versions.values():
        return next(iter(versions.values()))
    described = ", ".join(
        f"{t.name} v{t.version} from {CLEANED_EVENTS} {'unknown (none recorded)' if v is None else f'v{v}'}"
        for t, v in versions.items()
    )
    raise MixedInputVersionsError(
        f"training refused: its tables do not come from one {CLEANED_EVENTS} version ({described}); "
        f"rematerialize {', '.join(t.name for t in inputs)} together"
    )


def _input(role: str, name: str, uri: str) -> InputTable:
    version = table_version(uri)
    if version is None:
        raise FileNotFoundError(f"input table {name} does not exist at {uri}")
    return InputTable(
        role=role, name=name, uri=uri, version=version, rows=table_row_count(uri, version)
    )


@dataclass(frozen=True)
class TrainingSet:
    frame: (
        pd.DataFrame
    )  # canonical form: entity columns, label, features (see canonical_training_set)
    leakage: dict[
        str, dict[str, int]
    ]  # per feature view, rows that saw a future or stale feature row


def build_training_set(
    feast_store, inputs: tuple[InputTable, ...], service_name: str = FEATURE_SERVICE
) -> TrainingSet:
    """Labels at their pinned version, joined point-in-time to the service's features at theirs, and audited."""
    labels = next(t for t in inputs if t.role == LABELS_ROLE)
    entity_df = read_table(
        labels.uri, labels.version, list(TRAINING_LABELS.column_names)
    ).to_pandas()  # + the join keys of other entities
    pins = [SourcePin(t.role, t.uri, t.version) for t in inputs if t.role != LABELS_ROLE]
    joined = historical_features(feast_store, entity_df, pins, service_name)
    ttls = {fv.name: fv.ttl for fv in service_sources(feast_store, service_name)}
    return TrainingSet(
        canonical_training_set(joined, feature_names(feast_store, service_name)),
        leakage_violations(joined, ttls),
    )


def lineage_of(
    feast_store,
    training_set: pd.DataFrame,
    inputs: tuple[InputTable, ...],
    service_name: str = FEATURE_SERVICE,
) -> TrainingLineage:
    return TrainingLineage(
        inputs=inputs,
        training_set_sha256=content_sha256(training_set, CURRENT_FORM),
        training_set_hash_form=CURRENT_FORM,
        training_set_rows=len(training_set),
        feature_service=service_name,
        feature_refs=tuple(feature_refs(feast_store, service_name)),
        feast_project=feast_store.project,
    )
