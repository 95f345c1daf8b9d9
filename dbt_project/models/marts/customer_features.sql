{#- Point-in-time features: at each as-of date D only what the platform knew at D counts: customers
    whose record was delivered by D, and of each order placed by D the latest version delivered by D.
    A late delivery or a later status change therefore never alters the features of an earlier date.
    Incremental: a run computes the as-of dates not stored yet, and recomputes stored dates on or
    after the earliest partition loaded since the last build (a late partition can belong to them);
    earlier dates cannot change, so the result equals a full refresh. The post-hook records which
    loads the build has seen. -#}
{{ config(
    materialized='incremental',
    unique_key=['customer_key', 'as_of_date'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    tags=['point_in_time'],
    post_hook=[
        "create schema if not exists audit",
        "drop table if exists {{ source('build_state', 'customer_features_watermark') }}",
        "create table {{ source('build_state', 'customer_features_watermark') }} as
         select max(loaded_at) as loads_through from {{ source('shop', '_loaded_partitions') }}",
    ]
) }}

-- depends_on: {{ source('build_state', 'customer_features_watermark') }}

with

customers as (

    select * from {{ ref('int_customers_resolved') }}

),

order_versions as (

    select * from {{ ref('int_order_versions') }}

),

engagement as (

    select * from {{ ref('int_customer_engagement_at_dates') }}

),

coverage as (

    select * from {{ ref('int_source_coverage') }}

),

as_of_dates as (

    select * from {{ ref('int_as_of_dates') }}
    {% if is_incremental() %}
    where as_of_date not in (select distinct as_of_date from {{ this }})
        or as_of_date >= (
            select min(partition_date) from {{ source('shop', '_loaded_partitions') }}
            where loaded_at > (
                select max(loads_through) from {{ source('build_state', 'customer_features_watermark') }}
            )
        )
    {% endif %}

),

customer_dates as (

    select
        customers.customer_key,
        customers.signup_date,
        as_of_dates.as_of_date

    from customers
    cross join as_of_dates
    where customers.signup_date <= as_of_dates.as_of_date
        and customers.first_delivered_on <= as_of_dates.as_of_date

),

order_version_validity as (

    -- Of an order's versions, the one known at a date is the highest ranked (latest update, then
    -- latest delivery) delivered by then; a version stops being known once one ranked above it has
    -- been delivered. One pass over the versions instead of ranking them again at every as-of date.
    select
        customer_key,
        order_id,
        order_date,
        status,
        amount_eur,
        delivered_on,
        min(delivered_on) over (
            partition by order_id
            order by updated_at desc, delivered_on desc
            rows between unbounded preceding and 1 preceding
        ) as superseded_on

    from order_versions

),

orders_known_at_date as (

    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        order_version_validity.status,
        order_version_validity.amount_eur as amount,
        {{ dbt.datediff('order_version_validity.order_date', 'customer_dates.as_of_date', 'day') }} as days_before

    from customer_dates
    inner join order_version_validity
        on order_version_validity.customer_key = customer_dates.customer_key
        and order_version_validity.order_date <= customer_dates.as_of_date
        and order_version_validity.delivered_on <= customer_dates.as_of_date
        and (
            order_version_validity.superseded_on is null
            or order_version_validity.superseded_on > customer_dates.as_of_date
        )

),

order_history as (

    select
        customer_key,
        as_of_date,
        min(case when status = 'completed' then days_before end) as recency_days,
        max(case when status = 'completed' then days_before end) as days_since_first_order,
        sum(case when status = 'completed' then 1 else 0 end) as frequency,
        sum(case when status = 'completed' then amount else 0 end) as monetary,
        sum(case when status = 'completed' and days_before < 90 then 1 else 0 end) as orders_last_90d,
        sum(case when status = 'completed' and days_before >= 90 and days_before < 180 then 1 else 0 end)
            as orders_prev_90d,
        sum(case when status = 'completed' and days_before < 90 then amount else 0 end) as monetary_last_90d,
        sum(case when status = 'cancelled' then 1 else 0 end) as cancelled_orders,
        sum(case when status = 'returned' then 1 else 0 end) as returned_orders

    from orders_known_at_date
    group by customer_key, as_of_date

),

final as (

    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        cast({{ dbt.datediff('customer_dates.signup_date', 'customer_dates.as_of_date', 'day') }} as integer)
            as tenure_days,
        cast(order_history.recency_days as integer) as recency_days,
        cast(order_history.days_since_first_order as integer) as days_since_first_order,
        cast(coalesce(order_history.frequency, 0) as integer) as frequency,
        -- Money is rounded to cents: float sums depend on summation order, rounded ones do not.
        cast({{ round_double("coalesce(order_history.monetary, 0)", 2) }} as {{ type_double() }}) as monetary,
        cast(
            {{ round_double(
                "case when order_history.frequency > 0 then "
                ~ round_double("order_history.monetary", 2) ~ " / order_history.frequency end",
                2
            ) }}
            as {{ type_double() }}
        ) as avg_order_value,
        cast(coalesce(order_history.orders_last_90d, 0) as integer) as orders_last_90d,
        cast(coalesce(order_history.orders_prev_90d, 0) as integer) as orders_prev_90d,
        cast({{ round_double("coalesce(order_history.monetary_last_90d, 0)", 2) }} as {{ type_double() }}) as monetary_last_90d,
        cast(coalesce(order_history.cancelled_orders, 0) as integer) as cancelled_orders,
        cast(coalesce(order_history.returned_orders, 0) as integer) as returned_orders,
        -- Optional sources: null when the source had delivered nothing by the date, never invented.
        cast(case when coverage.has_tickets then coalesce(engagement.tickets_last_90d, 0) end as integer)
            as tickets_last_90d,
        cast(case when coverage.has_tickets then coalesce(engagement.open_tickets, 0) end as integer) as open_tickets,
        cast({{ round_double("engagement.avg_hours_to_resolve", 2) }} as {{ type_double() }}) as avg_hours_to_resolve,
        cast(case when coverage.has_tickets then coalesce(engagement.bad_ticket_experiences, 0) end as integer)
            as bad_ticket_experiences,
        cast({{ round_double("engagement.avg_ticket_csat", 2) }} as {{ type_double() }}) as avg_ticket_csat,
        cast(engagement.last_nps as integer) as last_nps,
        cast(engagement.last_csat as integer) as last_csat,
        cast(case when coverage.has_surveys then coalesce(engagement.survey_responses, 0) end as integer)
            as survey_responses,
        cast({{ round_double("engagement.avg_nps", 2) }} as {{ type_double() }}) as avg_nps,
        cast({{ round_double("engagement.avg_csat", 2) }} as {{ type_double() }}) as avg_csat,
        cast(case when coverage.has_marketing_events then coalesce(engagement.emails_sent_last_90d, 0) end as integer)
            as emails_sent_last_90d,
        cast(
            {{ round_double(
                "cast(engagement.emails_opened_last_90d as " ~ type_double() ~ ")"
                ~ " / nullif(engagement.emails_sent_last_90d, 0)",
                4
            ) }}
            as {{ type_double() }}
        ) as email_open_rate_last_90d,
        cast(
            {{ round_double(
                "cast(engagement.emails_clicked_last_90d as " ~ type_double() ~ ")"
                ~ " / nullif(engagement.emails_sent_last_90d, 0)",
                4
            ) }}
            as {{ type_double() }}
        ) as email_click_rate_last_90d,
        cast(case when coverage.has_marketing_events then coalesce(engagement.has_unsubscribed, 0) end as integer)
            as has_unsubscribed,
        cast(case when coverage.has_web_sessions then coalesce(engagement.sessions_last_30d, 0) end as integer)
            as sessions_last_30d,
        cast(case when coverage.has_web_sessions then coalesce(engagement.sessions_last_90d, 0) end as integer)
            as sessions_last_90d,
        cast({{ round_double("engagement.pages_per_session_last_90d", 2) }} as {{ type_double() }}) as pages_per_session_last_90d

    from customer_dates
    left join order_history
        on order_history.customer_key = customer_dates.customer_key
        and order_history.as_of_date = customer_dates.as_of_date
    left join engagement
        on engagement.customer_key = customer_dates.customer_key
        and engagement.as_of_date = customer_dates.as_of_date
    inner join coverage on coverage.as_of_date = customer_dates.as_of_date

)

select * from final
