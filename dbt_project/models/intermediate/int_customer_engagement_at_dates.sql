{#- Support, survey, email and web activity per customer and as-of date, point in time: only rows
    delivered by the as-of date count, and of a ticket only its latest version delivered by then.
    A table, not a view: customer_features and this model's own tests would each compute it again
    (at a million customers 16 s for the uniqueness test alone). -#}
{{ config(materialized='table', tags=['point_in_time']) }}

with

as_of_dates as (

    select * from {{ ref('int_as_of_dates') }}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

ticket_versions as (

    select * from {{ ref('base_service__tickets') }} where rejection_reason is null

),

survey_responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

email_events as (

    select * from {{ ref('stg_marketing__events') }}

),

web_sessions as (

    select * from {{ ref('stg_web__sessions') }}

),

tickets_known as (

    select
        identity.customer_key,
        as_of_dates.as_of_date,
        ticket_versions.ticket_id,
        ticket_versions.created_at,
        case when ticket_versions.resolved_at <= as_of_dates.as_of_date then ticket_versions.resolved_at end
            as resolved_at,
        ticket_versions.csat,
        row_number() over (
            partition by as_of_dates.as_of_date, ticket_versions.ticket_id
            order by ticket_versions.delivered_on desc, ticket_versions.loaded_at desc
        ) as version_rank

    from ticket_versions
    inner join identity on identity.customer_id = ticket_versions.customer_id
    inner join as_of_dates
        on ticket_versions.delivered_on <= as_of_dates.as_of_date
        and cast(ticket_versions.created_at as date) <= as_of_dates.as_of_date

),

ticket_features as (

    select
        customer_key,
        as_of_date,
        sum(case when {{ dbt.datediff('cast(created_at as date)', 'as_of_date', 'day') }} < 90 then 1 else 0 end)
            as tickets_last_90d,
        sum(case when resolved_at is null then 1 else 0 end) as open_tickets,
        avg({{ dbt.datediff('created_at', 'resolved_at', 'hour') }}) as avg_hours_to_resolve,
        sum(case when csat <= 2 or {{ dbt.datediff('created_at', 'resolved_at', 'hour') }} > 72 then 1 else 0 end)
            as bad_ticket_experiences,
        avg(csat) as avg_ticket_csat

    from tickets_known
    where version_rank = 1
    group by customer_key, as_of_date

),

surveys_known as (

    select
        identity.customer_key,
        as_of_dates.as_of_date,
        survey_responses.nps,
        survey_responses.csat,
        row_number() over (
            partition by identity.customer_key, as_of_dates.as_of_date
            order by survey_responses.responded_at desc, survey_responses.response_id desc
        ) as recency_rank,
        count(*) over (partition by identity.customer_key, as_of_dates.as_of_date) as survey_responses,
        -- Each answer is a noisy reading of satisfaction: the mean of all answers reads it best.
        avg(survey_responses.nps) over (partition by identity.customer_key, as_of_dates.as_of_date) as avg_nps,
        avg(survey_responses.csat) over (partition by identity.customer_key, as_of_dates.as_of_date) as avg_csat

    from survey_responses
    inner join identity on identity.customer_id = survey_responses.customer_id
    inner join as_of_dates
        on survey_responses.delivered_on <= as_of_dates.as_of_date
        and cast(survey_responses.responded_at as date) <= as_of_dates.as_of_date

),

survey_features as (

    select customer_key, as_of_date, nps as last_nps, csat as last_csat, survey_responses, avg_nps, avg_csat
    from surveys_known
    where recency_rank = 1

),

email_features as (

    select
        identity.customer_key,
        as_of_dates.as_of_date,
        sum(case when email_events.event_type = 'send' then 1 else 0 end) as emails_sent_last_90d,
        sum(case when email_events.event_type = 'open' then 1 else 0 end) as emails_opened_last_90d,
        sum(case when email_events.event_type = 'click' then 1 else 0 end) as emails_clicked_last_90d,
        max(case when email_events.event_type = 'unsubscribe' then 1 else 0 end) as has_unsubscribed

    from email_events
    inner join identity on identity.customer_id = email_events.customer_id
    inner join as_of_dates
        on email_events.delivered_on <= as_of_dates.as_of_date
        and cast(email_events.event_at as date) <= as_of_dates.as_of_date
        and {{ dbt.datediff('cast(email_events.event_at as date)', 'as_of_dates.as_of_date', 'day') }} < 90
    group by identity.customer_key, as_of_dates.as_of_date

),

web_features as (

    select
        identity.customer_key,
        as_of_dates.as_of_date,
        sum(case when {{ dbt.datediff('cast(web_sessions.started_at as date)', 'as_of_dates.as_of_date', 'day') }} < 30
            then 1 else 0 end) as sessions_last_30d,
        count(*) as sessions_last_90d,
        avg(web_sessions.pages_viewed) as pages_per_session_last_90d

    from web_sessions
    inner join identity on identity.customer_id = web_sessions.customer_id
    inner join as_of_dates
        on web_sessions.delivered_on <= as_of_dates.as_of_date
        and cast(web_sessions.started_at as date) <= as_of_dates.as_of_date
        and {{ dbt.datediff('cast(web_sessions.started_at as date)', 'as_of_dates.as_of_date', 'day') }} < 90
    group by identity.customer_key, as_of_dates.as_of_date

),

keys as (

    select customer_key, as_of_date from ticket_features
    union
    select customer_key, as_of_date from survey_features
    union
    select customer_key, as_of_date from email_features
    union
    select customer_key, as_of_date from web_features

),

final as (

    select
        keys.customer_key,
        keys.as_of_date,
        ticket_features.tickets_last_90d,
        ticket_features.open_tickets,
        ticket_features.avg_hours_to_resolve,
        ticket_features.bad_ticket_experiences,
        ticket_features.avg_ticket_csat,
        survey_features.last_nps,
        survey_features.last_csat,
        survey_features.survey_responses,
        survey_features.avg_nps,
        survey_features.avg_csat,
        email_features.emails_sent_last_90d,
        email_features.emails_opened_last_90d,
        email_features.emails_clicked_last_90d,
        email_features.has_unsubscribed,
        web_features.sessions_last_30d,
        web_features.sessions_last_90d,
        web_features.pages_per_session_last_90d

    from keys
    left join ticket_features
        on ticket_features.customer_key = keys.customer_key and ticket_features.as_of_date = keys.as_of_date
    left join survey_features
        on survey_features.customer_key = keys.customer_key and survey_features.as_of_date = keys.as_of_date
    left join email_features
        on email_features.customer_key = keys.customer_key and email_features.as_of_date = keys.as_of_date
    left join web_features
        on web_features.customer_key = keys.customer_key and web_features.as_of_date = keys.as_of_date

)

select * from final
