"""Framework-free core of the lakehouse: what a notebook user can call without starting Dagster.

One subpackage per concern, each importing only from the ones before it: `events` (the event
vocabulary and the synthetic generator), `tables` (schemas, ingest, the pandera audit, Delta
storage), `engines` (DuckDB and Spark), `transforms` (the PySpark-API transformations), `features`
(Feast on Delta) and `ml` (training sets, training, lineage, reproduction, retention, drift).
`config` says where files live and `cli` is the `lakehouse` command; `assets/` and `resources/`
only wire all of it into Dagster.
"""

import os as _os

# The libraries below report usage over the network by default; this project runs offline.
for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "FEAST_USAGE": "False",
    "DO_NOT_TRACK": "1",
}.items():
    _os.environ.setdefault(_name, _value)
