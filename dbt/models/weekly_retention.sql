{{ config(partition_column='activity_week', partition_grain='week') }}
-- Weekly retention cohorts: of the users first seen in a week, how many are active k weeks later.
with activity as (
    select distinct user_id, cast(date_trunc('week', event_date) as date) as activity_week
    from {{ source('lakehouse', 'cleaned_events') }}
    where {{ in_partition_weeks('event_date') }}
),

cohorts as (
    -- Over all history: a user's cohort is the week (Monday) of their first event.
    select user_id, cast(date_trunc('week', min(event_date)) as date) as cohort_week
    from {{ source('lakehouse', 'cleaned_events') }}
    group by user_id
),

cohort_sizes as (
    select cohort_week, count(*) as cohort_users
    from cohorts
    group by cohort_week
)

select
    a.activity_week,
    c.cohort_week,
    cast(date_diff('day', c.cohort_week, a.activity_week) // 7 as integer) as weeks_since_first_seen,
    s.cohort_users,
    count(*) as active_users,
    round(count(*) / s.cohort_users, 4) as retention_rate
from activity as a
join cohorts as c using (user_id)
join cohort_sizes as s using (cohort_week)
group by a.activity_week, c.cohort_week, s.cohort_users
