"""Feast on the lakehouse's Delta tables: the offline store and the calls the pipeline makes.

`feast_delta` is a Feast offline store (and its `DeltaSource`) that reads each feature table through
its Delta log, optionally pinned to a version, and point-in-time joins in DuckDB; Feast loads it by
the class path in feature_repo/feature_store.yaml. `feature_store` renders that configuration and
applies, materializes and retrieves: historical features pinned to Delta versions, the online load
and the online/offline consistency check. The feature definitions themselves are in feature_repo/.
"""
