-- Orders and revenue per UTC day, from purchase_completed events.
with purchases as (
    select event_date, user_id, order_id, revenue_usd
    from {{ source('lakehouse', 'cleaned_events') }}
    where event_name = 'purchase_completed' and {{ in_partition_range('event_date') }}
)
select
    event_date,
    count(distinct order_id) as orders,
    count(distinct user_id) as purchasers,
    round(sum(revenue_usd), 2) as revenue_usd,
    round(sum(revenue_usd) / count(distinct order_id), 2) as average_order_value_usd
from purchases
group by event_date
