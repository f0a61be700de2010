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
background thread every `flush_interval_secs`, when `queue_capacity` rows are waiting, and when the
process exits normally (Ctrl-C or SIGTERM to `feast serve` included). A process killed with SIGKILL
loses what it had not flushed; a failed flush keeps its rows for the next one.

Reads that are not traffic (the serving-skew check's own online read) run inside `not_logged()`.
"""

from __future__ import annotations

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
from feast.feature_logging import LOG_DATE_FIELD, LOG_TIMESTAMP_FIELD, REQUEST_ID_FIELD, FeatureServiceLoggingSource
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


def log_rows(read: ServedRead, schema: pa.Schema) -> pa.Table:
    """One log row per entity row of a read, in the feature-log schema of its service."""
    proto = read.response.proto
    position = {name: i for i, name in enumerate(proto.metadata.feature_names.val)}
    columns: dict[str, list] = {}
    for projection in read.service.feature_view_projections:
        prefix = projection.name_to_use()
        for feature in projection.features:
            logged = f"{prefix}__{feature.name}"
            result = proto.results[position[logged if read.full_feature_names else feature.name]]
            columns[logged] = [feast_value_type_to_python_type(v) for v in result.values]
            columns[f"{logged}__timestamp"] = [datetime.fromtimestamp(t.seconds, timezone.utc) if t.seconds else None for t in result.event_timestamps]
            columns[f"{logged}__status"] = list(result.statuses)
    for name in schema.names:
        if name not in columns and name in position:  # a join key
            columns[name] = [feast_value_type_to_python_type(v) for v in proto.results[position[name]].values]
    n = read.rows
    columns[LOG_TIMESTAMP_FIELD] = [read.served_at] * n
    columns[LOG_DATE_FIELD] = [read.served_at.date()] * n
    columns[REQUEST_ID_FIELD] = [read.request_id] * n
    return pa.table({name: pa.array(columns.get(name, [None] * n), field.type) for name, field in zip(schema.names, schema)}, schema=schema)


class ServedFeatureLog:
    """Reads waiting to be written, and the thread that writes them."""

    def __init__(self, provider: LoggingProvider, config, registry, project: str, flush_interval_secs: int, queue_capacity: int):
        self._provider, self._config, self._registry, self._project = provider, config, registry, project
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
                log.exception("writing served-feature logs failed; they are kept for the next flush")

    def flush(self) -> int:
        """Write every waiting read to its service's destination; the number of rows written."""
        with self._flush_lock:
            with self._lock:
                reads, self._pending, self._pending_rows = self._pending, [], 0
            by_service: dict[str, list[ServedRead]] = {}
            for read in reads:
                by_service.setdefault(read.service.name, []).append(read)
            written = 0
            for name, service_reads in by_service.items():
                service = service_reads[0].service
                source = FeatureServiceLoggingSource(service, self._project)
                try:
                    schema = source.get_schema(self._registry)
                    table = pa.concat_tables([log_rows(r, schema) for r in service_reads])
                    self._provider.offline_store.write_logged_features(self._config, table, source, service.logging_config, self._registry)
                except Exception:
                    with self._lock:  # put back, oldest first
                        self._pending[:0] = service_reads
                        self._pending_rows += sum(r.rows for r in service_reads)
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
                self._log = ServedFeatureLog(self, self.repo_config, registry, project, options.flush_interval_secs, options.queue_capacity)
        return self._log

    def _record(self, features, response: OnlineResponse, registry, project: str, full_feature_names: bool) -> None:
        if not isinstance(features, FeatureService) or features.logging_config is None or _suppressed.get():
            return
        if random.random() >= features.logging_config.sample_rate:
            return
        served_log = self.served_log(registry, project)
        if served_log is not None:
            served_log.record(ServedRead(features, response, full_feature_names, datetime.now(timezone.utc), uuid.uuid4().hex))

    def get_online_features(self, config, features, entity_rows, registry, project, full_feature_names=False, include_feature_view_version_metadata=False):
        response = super().get_online_features(config, features, entity_rows, registry, project, full_feature_names, include_feature_view_version_metadata)
        self._record(features, response, registry, project, full_feature_names)
        return response

    async def get_online_features_async(self, config, features, entity_rows, registry, project, full_feature_names=False, include_feature_view_version_metadata=False):
        response = await super().get_online_features_async(config, features, entity_rows, registry, project, full_feature_names, include_feature_view_version_metadata)
        self._record(features, response, registry, project, full_feature_names)
        return response
