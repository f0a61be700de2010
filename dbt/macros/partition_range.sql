{#
  The run's partition range, from the start_date / end_date vars (Dagster passes its partition
  range; a standalone `dbt build` passes none and rebuilds all history). The vars are parsed as
  dates, so only a well-formed date ever reaches the SQL.
#}
{% macro partition_bounds() %}
  {%- set start, end = var('start_date'), var('end_date') -%}
  {%- if start is none and end is none -%}
    {{ return(none) }}
  {%- elif start is none or end is none -%}
    {{ exceptions.raise_compiler_error("set both start_date and end_date, or neither") }}
  {%- endif -%}
  {%- set bounds = [modules.datetime.date.fromisoformat(start | string), modules.datetime.date.fromisoformat(end | string)] -%}
  {%- if bounds[0] > bounds[1] -%}
    {{ exceptions.raise_compiler_error("start_date " ~ bounds[0] ~ " is after end_date " ~ bounds[1]) }}
  {%- endif -%}
  {{ return(bounds) }}
{% endmacro %}

{# A predicate: `column` (a date) lies in the run's range, widened by `days_before` / `days_after`. #}
{% macro in_partition_range(column, days_before=0, days_after=0) %}
  {%- set bounds = partition_bounds() -%}
  {%- if bounds is none -%}
    true
  {%- else -%}
    {%- set delta = modules.datetime.timedelta -%}
    {{ column }} between date '{{ (bounds[0] - delta(days=days_before)).isoformat() }}' and date '{{ (bounds[1] + delta(days=days_after)).isoformat() }}'
  {%- endif -%}
{% endmacro %}

{# A predicate: the ISO week (starting Monday) of `column` overlaps the run's range. #}
{% macro in_partition_weeks(column) %}
  {%- set bounds = partition_bounds() -%}
  {%- if bounds is none -%}
    true
  {%- else -%}
    {%- set delta = modules.datetime.timedelta -%}
    {%- set first_monday = bounds[0] - delta(days=bounds[0].weekday()) -%}
    {%- set last_sunday = bounds[1] + delta(days=6 - bounds[1].weekday()) -%}
    {{ column }} between date '{{ first_monday.isoformat() }}' and date '{{ last_sunday.isoformat() }}'
  {%- endif -%}
{% endmacro %}
