{#
  Reconciliation: for every `key` (a day), the model's `column_name` equals the sum of the same
  column over `parts` (a breakdown of the same total, e.g. by platform), within `tolerance` (the
  rounding of each part). A key missing on either side counts as 0 there, so a part that the
  breakdown dropped fails the test too. Returns one row per key that does not reconcile.
#}
{% test sums_to_total(model, column_name, parts, key, tolerance=0) %}
with total as (
    select {{ key }} as reconciled_key, {{ column_name }} as total
    from {{ model }}
),

breakdown as (
    select {{ key }} as reconciled_key, sum({{ column_name }}) as sum_of_parts
    from {{ parts }}
    group by {{ key }}
)

select
    coalesce(total.reconciled_key, breakdown.reconciled_key) as reconciled_key,
    total.total,
    breakdown.sum_of_parts
from total
full outer join breakdown on total.reconciled_key = breakdown.reconciled_key
where abs(coalesce(total.total, 0) - coalesce(breakdown.sum_of_parts, 0)) > {{ tolerance }}
{% endtest %}
