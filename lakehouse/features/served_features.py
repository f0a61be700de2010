"""Served-feature logging: what the online store answered for a feature service, appended to Delta.

Feast's Python feature server (`feast serve`) has no feature logging of its own (the Go server that
had it is gone), so this project's provider adds it, beneath both `feast serve` and the SDK:

    provider: lakehouse.features.served_features.LoggingProvider
    feature_server:
      type: local
      feature_logging: {enabled: true, flush_interval_secs: 60}

Every online read made through a feature service that has a `logging_config` is recorded, in the
schema Feast defines for feature logs (`FeatureServiceLoggingSource`): the join keys, each feature
with its event timestamp and status, `__log_timestamp`, `__log_date` and `__request_id` (one per
request). Reads are kept in memory and appended to the service's `DeltaLoggingDestination` by a
background thread every `flush_interval_secs`, when `queue_capacity` rows are waiting, when `feast
serve` shuts down (Ctrl-C, SIGTERM, a worker recycled after `--max-requests`: Feast closes the
provider) and when an SDK process exits. A process killed with SIGKILL loses what it had not
flushed; a failed flush keeps its rows for the next one.

Reads that are not traffic (the serving-skew check's own online read) run inside `not_logged()`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
from feast.feature_logging import (
    LOG_DATE_FIELD,
    LOG_TIMESTAMP_FIELD,
    REQUEST_ID_FIELD,
    FeatureServiceLoggingSource,
)
from feast.feature_service import FeatureService
from feast.infra.passthrough_provider import PassthroughProvider
from feast.online_response import OnlineResponse
from feast.type_map import feast_value_type_to_python_type

log = logging.getLogger(__name__)
_suppressed = contextvars.ContextVar("lakehouse_served_features_suppressed", default=False)


@contextlib.contextmanager
def not_logged():
    """Online reads inside this block are not recorded as served traffic."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


@dataclass(frozen=True)
class ServedRead:
    service: FeatureService
    response: OnlineResponse
    full_feature_names: bool
    served_at: datetime
    request_id: str

    @property
    def rows(self) -> int:
        return len(self.response.proto.results[0].values) if self.response.proto.results else 0


def _python_value(value):
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    if (
        kind.endswith("_list_val")
        or kind.endswith("_set_val")
        or kind in ("map_val", "struct_val", "unix_timestamp_val")
    ):
        return feast_value_type_to_python_type(value)  # the rare kinds: Feast's own conversion
    return getattr(value, kind)


def log_rows(reads: list[ServedRead], schema: pa.Schema) -> pa.Table:
    """One log row per entity row of the reads (all of one service), in its feature-log schema."""
    if not reads:
        return schema.empty_table()
    # (logged column, the feature's name in a response without full feature names), in service order.
    features = [
        (f"{p.name_to_use()}__{f.name}", f.name)
        for p in reads[0].service.feature_view_projections
        for f in p.features
    ]
    per_feature = {
        c for logged, _ in features for c in (logged, f"{logged}__timestamp", f"{logged}__status")
    }
    join_keys = [
        n
        for n in schema.names
        if n not in per_feature and n not in (LOG_TIMESTAMP_FIELD, LOG_DATE_FIELD, REQUEST_ID_FIELD)
    ]
    columns: dict[str, list] = {name: [] for name in schema.names}
    seconds: dict[str, list[int]] = {f"{logged}__timestamp": [] for logged, _ in features}
    for read in reads:
        proto = read.response.proto
        position = {name: i for i, name in enumerate(proto.metadata.feature_names.val)}
        for logged, short in features:
            result = proto.results[position[logged if read.full_feature_names else short]]
            columns[logged].extend(_python_value(v) for v in result.values)
            seconds[f"{logged}__timestamp"].extend(t.seconds for t in result.event_timestamps)
            columns[f"{logged}__status"].extend(result.statuses)
        for name in join_keys:
            values = (
                proto.results[position[name]].values if name in position else [None] * read.rows
            )
            columns[name].extend(_python_value(v) if v is not None else None for v in values)
        columns[LOG_TIMESTAMP_FIELD].extend([read.served_at] * read.rows)
        columns[LOG_DATE_FIELD].extend([read.served_at.date()] * read.rows)
        columns[REQUEST_ID_FIELD].extend([read.request_id] * read.rows)
    arrays = []
    for field in schema:
        if field.name in seconds:
            # Epoch 0 is how the online store answers "no row": a null time in the log.
            stamps = pa.array(seconds[field.name], pa.int64())
            arrays.append(pc.if_else(pc.equal(stamps, 0), None, stamps).cast(field.type))
        else:
            arrays.append(pa.array(columns[field.name], field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class ServedFeatureLog:
    """Reads waiting to be written, and the thread that writes them."""

    def __init__(
        self,
        provider: LoggingProvider,
        config,
        registry,
        project: str,
        flush_interval_secs: int,
        queue_capacity: int,
    ):
        self._provider, self._config, self._registry, self._project = (
            provider,
            config,
            registry,
            project,
        )
        self._flush_interval, self._capacity = flush_interval_secs, queue_capacity
        self._pending: list[ServedRead] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="served-feature-log", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def record(self, read: ServedRead) -> None:
        with self._lock:
            self._pending.append(read)
            self._pending_rows += read.rows
            full = self._pending_rows >= self._capacity
        if full:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # kept for the next flush; the server goes on serving
                log.exception(
                    "writing served-feature logs failed; they are kept for the next flush"
                )

    def flush(self) -> int:
        """Write every waiting read to its service's destination; the number of rows written."""
        with self._flush_lock:
            with self._lock:
                reads, self._pending, self._pending_rows = self._pending, [], 0
            by_service: dict[str, list[ServedRead]] = {}
            for read in reads:
                by_service.setdefault(read.service.name, []).append(read)
            written = 0
            groups = list(by_service.values())
            for i, service_reads in enumerate(groups):
                service = service_reads[0].service
                source = FeatureServiceLoggingSource(service, self._project)
                try:
                    table = log_rows(service_reads, source.get_schema(self._registry))
                    self._provider.offline_store.write_logged_features(
                        self._config, table, source, service.logging_config, self._registry
                    )
                except Exception:
                    unwritten = [read for group in groups[i:] for read in group]
                    with self._lock:  # put back, ahead of what arrived meanwhile
                        self._pending[:0] = unwritten
                        self._pending_rows += sum(r.rows for r in unwritten)
                    raise
                written += table.num_rows
            return written


class LoggingProvider(PassthroughProvider):
    """Feast's local provider, recording online reads through feature services that log."""

    def __init__(self, config):
        super().__init__(config)
        self._log: ServedFeatureLog | None = None
        self._log_lock = threading.Lock()

    def _logging_options(self):
        server = self.repo_config.feature_server
        options = getattr(server, "feature_logging", None)
        return options if options is not None and options.enabled else None

    def served_log(self, registry, project: str) -> ServedFeatureLog | None:
        options = self._logging_options()
        if options is None:
            return None
        with self._log_lock:
            if self._log is None:
                self._log = ServedFeatureLog(
                    self,
                    self.repo_config,
                    registry,
                    project,
                    options.flush_interval_secs,
                    options.queue_capacity,
                )
        return self._log

    def _record(
        self, features, response: OnlineResponse, registry, project: str, full_feature_names: bool
    ) -> None:
        if (
            not isinstance(features, FeatureService)
            or features.logging_config is None
            or _suppressed.get()
        ):
            return
        if random.random() >= features.logging_config.sample_rate:
            return
        served_log = self.served_log(registry, project)
        if served_log is not None:
            served_log.record(
                ServedRead(
                    features,
                    response,
                    full_feature_names,
                    datetime.now(timezone.utc),
                    uuid.uuid4().hex,
                )
            )

    def get_online_features(
        self,
        config,
        features,
        entity_rows,
        registry,
        project,
        full_feature_names=False,
        include_feature_view_version_metadata=False,
    ):
        response = super().get_online_features(
            config,
            features,
            entity_rows,
            registry,
            project,
            full_feature_names,
            include_feature_view_version_metadata,
        )
        self._record(features, response, registry, project, full_feature_names)
        return response

    async def close(self) -> None:
        """`feast serve` calls this as it shuts down (Ctrl-C, SIGTERM, a recycled worker): write what waits.

        Uvicorn ends a worker by re-raising SIGTERM once the app has shut down, so atexit never runs there."""
        if self._log is not None:
            await asyncio.to_thread(self._log.flush)
        await super().close()

    async def get_online_features_async(
        self,
        config,
        features,
        entity_rows,
        registry,
        project,
        full_feature_names=False,
        include_feature_view_version_metadata=False,
    ):
        response = await super().get_online_features_async(
            config,
            features,
            entity_rows,
            registry,
            project,
            full_feature_names,
            include_feature_view_version_metadata,
        )
        self._record(features, response, registry, project, full_feature_names)
        return response


def flush_served_features(store) -> int:
    """Write what this process has served and not logged yet; the rows written (0 if it does not log).

    A serving process flushes on its own; this is for callers that must see their reads logged now."""
    provider = store._get_provider()
    served_log = (
        provider.served_log(store.registry, store.project)
        if isinstance(provider, LoggingProvider)
        else None
    )
    return served_log.flush() if served_log else 0
