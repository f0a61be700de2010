"""Framework-free core of the lakehouse: what a notebook user can call without starting Dagster.

The event generator, table schemas, the Spark transformations, Delta storage, training-set
construction and its reproduction live here; `assets/` and `resources/` only wire them into Dagster.
"""

import os as _os

# The libraries below report usage over the network by default; this project runs offline.
for _name, _value in {"MLFLOW_DISABLE_TELEMETRY": "true", "FEAST_USAGE": "False", "DO_NOT_TRACK": "1"}.items():
    _os.environ.setdefault(_name, _value)
