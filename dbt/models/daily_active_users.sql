-- Distinct users with at least one event per UTC day.
select
    event_date,
    count(distinct user_id) as active_users,
    count(distinct case when identity = 'logged_in' then user_id end) as logged_in_users,
    count(distinct case when identity = 'anonymous' then user_id end) as anonymous_users,
    count(*) as events
from {{ source('lakehouse', 'cleaned_events') }}
where {{ in_partition_range('event_date') }}
group by event_date
