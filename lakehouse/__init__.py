"""Framework-free core of the lakehouse: what a notebook user can call without starting Dagster.

The event generator, table schemas, the Spark transformations, Delta storage, training-set
construction and its reproduction live here; `assets/` and `resources/` only wire them into Dagster.
"""
