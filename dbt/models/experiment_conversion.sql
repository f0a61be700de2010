-- Purchase conversion per UTC day and experiment variant.
with exposures as (
    select event_date, user_id, experiment_variant, min(event_ts) as exposed_at
    from {{ source('lakehouse', 'cleaned_events') }}
    where experiment_variant is not null and {{ in_partition_range('event_date') }}
    group by event_date, user_id, experiment_variant
),

purchases as (
    select event_date, user_id, order_id, revenue_usd, event_ts
    from {{ source('lakehouse', 'cleaned_events') }}
    where event_name = 'purchase_completed' and {{ in_partition_range('event_date') }}
),

converted as (
    select x.event_date, x.experiment_variant, x.user_id, count(distinct p.order_id) as orders, sum(p.revenue_usd) as revenue_usd
    from exposures as x
    join purchases as p
      on p.event_date = x.event_date and p.user_id = x.user_id and p.event_ts >= x.exposed_at
    group by x.event_date, x.experiment_variant, x.user_id
)

select
    x.event_date,
    x.experiment_variant,
    count(distinct x.user_id) as exposed_users,
    count(distinct c.user_id) as converted_users,
    round(count(distinct c.user_id) / count(distinct x.user_id), 4) as conversion_rate,
    coalesce(sum(c.orders), 0) as orders,
    round(coalesce(sum(c.revenue_usd), 0), 2) as revenue_usd
from exposures as x
left join converted as c
  on c.event_date = x.event_date and c.experiment_variant = x.experiment_variant and c.user_id = x.user_id
group by x.event_date, x.experiment_variant
