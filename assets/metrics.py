"""Metrics layer: the dbt project in dbt/, one Dagster asset per model, each landed as a Delta table."""

from collections.abc import Mapping
from typing import Any

from dagster import BackfillPolicy, AssetExecutionContext, MetadataValue, Output
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from resources.dbt import dbt_manifest
from resources.delta import DeltaStorage


class LakehouseDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "metrics"


@dbt_assets(manifest=dbt_manifest(), dagster_dbt_translator=LakehouseDbtTranslator(), backfill_policy=BackfillPolicy.single_run())
def dbt_metrics(context: AssetExecutionContext, dbt: DbtCliResource, delta: DeltaStorage):
    """Build the dbt models and run their tests (as asset checks); report each model's Delta version."""
    store = delta.store()
    for event in dbt.cli(["build"], context=context).stream():
        if isinstance(event, Output) and store.version(event.output_name) is not None:
            event = event.with_metadata(
                {
                    **event.metadata,
                    "delta_uri": MetadataValue.path(store.uri(event.output_name)),
                    "delta_version": MetadataValue.int(store.version(event.output_name)),
                }
            )
        yield event
