-- Distinct users with at least one event per UTC day and platform.
select
    event_date,
    platform,
    count(distinct user_id) as active_users
from {{ source('lakehouse', 'cleaned_events') }}
group by event_date, platform
