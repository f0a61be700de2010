-- The view -> cart -> purchase funnel per UTC day, in order, per user.
with steps as (
    select event_date, user_id, event_name, event_ts
    from {{ source('lakehouse', 'cleaned_events') }}
    where event_name in ('product_viewed', 'cart_item_added', 'purchase_completed')
      and {{ in_partition_range('event_date') }}
),

viewed as (
    select event_date, user_id, min(event_ts) as viewed_at
    from steps
    where event_name = 'product_viewed'
    group by event_date, user_id
),

carted as (
    select v.event_date, v.user_id, min(s.event_ts) as carted_at
    from viewed as v
    join steps as s
      on s.event_date = v.event_date and s.user_id = v.user_id
     and s.event_name = 'cart_item_added' and s.event_ts >= v.viewed_at
    group by v.event_date, v.user_id
),

purchased as (
    select distinct c.event_date, c.user_id
    from carted as c
    join steps as s
      on s.event_date = c.event_date and s.user_id = c.user_id
     and s.event_name = 'purchase_completed' and s.event_ts >= c.carted_at
)

select
    v.event_date,
    count(distinct v.user_id) as viewers,
    count(distinct c.user_id) as cart_adders,
    count(distinct p.user_id) as purchasers,
    round(count(distinct c.user_id) / count(distinct v.user_id), 4) as view_to_cart_rate,
    round(count(distinct p.user_id) / nullif(count(distinct c.user_id), 0), 4) as cart_to_purchase_rate,
    round(count(distinct p.user_id) / count(distinct v.user_id), 4) as view_to_purchase_rate
from viewed as v
left join carted as c on c.event_date = v.event_date and c.user_id = v.user_id
left join purchased as p on p.event_date = v.event_date and p.user_id = v.user_id
group by v.event_date
