"""The purchase-propensity model and what keeps it reproducible and honest.

A training set is built from pinned Delta versions through Feast (`training_set`), audited for
point-in-time leakage (`leakage`), put in canonical form and hashed (`fingerprint`), then trained
on (`training`) and evaluated (`evaluation`). `lineage` and `tracking` record the run in MLflow,
`reproduce` returns a run's training set verified against that record, and `retention` keeps the
Delta versions a run needs through table maintenance. `drift` and `serving_skew` compare the
features served now with those the model learnt from.
"""
