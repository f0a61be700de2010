"""Feast on the lakehouse's Delta tables: the offline store, served-feature logging, and the calls the pipeline makes.

`feast_delta` is a Feast offline store (and its `DeltaSource`, saved-dataset storage and logging
destination) that reads each feature table through its Delta log, optionally pinned to a version;
Feast loads it by the class path in feature_repo/feature_store.yaml. `point_in_time` is the join it
runs, in DuckDB, with no Feast in it. `served_features` is the provider that logs what feature
services serve, under `feast serve` and the SDK. `feature_store` renders the configuration for the
profile and applies, materializes and retrieves: historical features pinned to Delta versions, the
online load and the online/offline consistency check. The feature definitions are in feature_repo/.
"""
