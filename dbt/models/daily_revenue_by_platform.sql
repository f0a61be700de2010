-- Orders and revenue per UTC day and platform, labelled by the platforms seed.
select
    e.event_date,
    e.platform,
    p.platform_family,
    count(distinct e.order_id) as orders,
    round(sum(e.revenue_usd), 2) as revenue_usd
from {{ source('lakehouse', 'cleaned_events') }} as e
join {{ ref('platforms') }} as p on p.platform = e.platform
where e.event_name = 'purchase_completed' and {{ in_partition_range('e.event_date') }}
group by e.event_date, e.platform, p.platform_family
