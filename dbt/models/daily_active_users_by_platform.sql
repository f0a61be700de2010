-- Distinct users with at least one event per UTC day and platform, labelled by the platforms seed.
select
    e.event_date,
    e.platform,
    p.platform_family,
    count(distinct e.user_id) as active_users
from {{ source('lakehouse', 'cleaned_events') }} as e
join {{ ref('platforms') }} as p on p.platform = e.platform
where {{ in_partition_range('e.event_date') }}
group by e.event_date, e.platform, p.platform_family
