{#- Point-in-time features: at each as-of date D only what the platform knew at D counts: customers
    whose record was delivered by D, and of each order placed by D the latest version delivered by D.
    A late delivery or a later status change therefore never alters the features of an earlier date.
    Incremental: a run computes the asked-for as-of dates that are not stored or no longer complete
    (a partition loaded after a date was computed belongs to it: build_state.customer_features_dates
    keeps what each date saw). The order features of a date start from the latest complete stored date
    at most 90 days before it: only customers whose known orders changed in between are computed from
    their history; the others keep their counts and sums, their recency moves on by the days between,
    and the orders that left the 90-day windows are taken out. A full refresh computes every customer
    from history and gives the same rows. A build computes whole dates, so it replaces every stored row
    of a date it computes (unique_key as_of_date: a customer no longer known then leaves with them, and
    the delete reads one column, however long the history). -#}
{{ config(
    materialized='incremental',
    unique_key='as_of_date',
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['as_of_date']),
    on_schema_change='fail',
    tags=['point_in_time'],
    pre_hook=[
        "{{ without_nested_loops() }}",
        "create schema if not exists audit",
        "create table if not exists {{ source('build_state', 'customer_features_dates') }}
         (as_of_date date, loads_through timestamp)",
    ],
    post_hook=[
        "{{ delete_rows(source('build_state', 'customer_features_dates'),
                        'as_of_date in (select as_of_date from ' ~ ref('int_as_of_dates') ~ ')
                         or as_of_date not in (select distinct as_of_date from ' ~ this ~ ')') }}",
        "insert into {{ source('build_state', 'customer_features_dates') }}
         select as_of_date, (select max(loaded_at) from {{ source('shop', '_loaded_partitions') }})
         from {{ ref('int_as_of_dates') }}",
    ]
) }}

-- depends_on: {{ source('build_state', 'customer_features_dates') }}

with

customers as (

    select * from {{ ref('int_customers_resolved') }}

),

order_versions as (

    select * from {{ ref('int_order_version_validity') }}

),

engagement as (

    select * from {{ ref('int_customer_engagement_at_dates') }}

),

coverage as (

    select * from {{ ref('int_source_coverage') }}

),

requested_dates as (

    select * from {{ ref('int_as_of_dates') }}

),

{% if is_incremental() %}

loaded_partitions as (

    select * from {{ source('shop', '_loaded_partitions') }}

),

stored_dates as (

    -- A stored date is complete while nothing loaded after it was computed belongs to it.
    select
        stored.as_of_date,
        not exists (
            select 1 from loaded_partitions
            where loaded_partitions.partition_date <= stored.as_of_date
                and (
                    computed.loads_through is null
                    or loaded_partitions.loaded_at > computed.loads_through
                )
        ) as is_complete

    from (select distinct as_of_date from {{ this }}) as stored
    left join {{ source('build_state', 'customer_features_dates') }} as computed
        on computed.as_of_date = stored.as_of_date

),

as_of_dates as (

    select requested_dates.as_of_date
    from requested_dates
    where requested_dates.as_of_date not in (select as_of_date from stored_dates where is_complete)

),

state_dates as (

    select
        as_of_dates.as_of_date,
        max(stored_dates.as_of_date) as state_date

    from as_of_dates
    left join stored_dates
        on stored_dates.is_complete
        and stored_dates.as_of_date < as_of_dates.as_of_date
        and stored_dates.as_of_date >= {{ dbt.dateadd('day', -90, 'as_of_dates.as_of_date') }}
    group by as_of_dates.as_of_date

),

stored_features as (

    select * from {{ this }}
    where as_of_date in (select state_date from state_dates)

),

{% else %}

state_dates as (

    select as_of_date, cast(null as date) as state_date from requested_dates

),

{% endif %}

customer_dates as (

    select
        customers.customer_key,
        customers.signup_date,
        state_dates.as_of_date,
        state_dates.state_date

    from customers
    cross join state_dates
    where customers.signup_date <= state_dates.as_of_date
        and customers.first_delivered_on <= state_dates.as_of_date

),

{% if is_incremental() %}

changed_customers as (

    -- Customers whose known orders differ between the state date and the as-of date: a version
    -- became known or stopped being known in between.
    select distinct
        state_dates.as_of_date,
        order_versions.customer_key

    from state_dates
    inner join order_versions
        on (
            order_versions.known_from > state_dates.state_date
            and order_versions.known_from <= state_dates.as_of_date
        )
        or (
            order_versions.superseded_on > state_dates.state_date
            and order_versions.superseded_on <= state_dates.as_of_date
        )

),

carried_customers as (

    -- Customers stored at the state date whose known orders did not change since.
    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        customer_dates.state_date,
        stored_features.recency_days,
        stored_features.days_since_first_order,
        stored_features.frequency,
        stored_features.monetary,
        stored_features.orders_last_90d,
        stored_features.orders_prev_90d,
        stored_features.monetary_last_90d,
        stored_features.cancelled_orders,
        stored_features.returned_orders

    from customer_dates
    inner join stored_features
        on stored_features.customer_key = customer_dates.customer_key
        and stored_features.as_of_date = customer_dates.state_date
    where not exists (
        select 1 from changed_customers
        where changed_customers.customer_key = customer_dates.customer_key
            and changed_customers.as_of_date = customer_dates.as_of_date
    )

),

window_exits as (

    -- The completed orders of the carried customers that left a 90-day window between the state date
    -- and the as-of date (known then and now alike: their orders did not change). With at most 90
    -- days between the dates, the last 90 days lose the orders placed in (state - 90, as-of - 90],
    -- which the previous 90 days gain, and those lose the orders placed in (state - 180, as-of - 180].
    select
        carried_customers.customer_key,
        carried_customers.as_of_date,
        sum(
            case when order_versions.order_date > {{ dbt.dateadd('day', -90, 'carried_customers.state_date') }}
                then 1 else 0 end
        ) as left_last_90d,
        sum(
            case when order_versions.order_date > {{ dbt.dateadd('day', -90, 'carried_customers.state_date') }}
                then order_versions.amount_eur else 0 end
        ) as left_last_90d_amount,
        sum(
            case when order_versions.order_date <= {{ dbt.dateadd('day', -180, 'carried_customers.as_of_date') }}
                then 1 else 0 end
        ) as left_prev_90d

    from carried_customers
    inner join order_versions
        on order_versions.customer_key = carried_customers.customer_key
        and order_versions.status = 'completed'
        and order_versions.known_from <= carried_customers.state_date
        and (order_versions.superseded_on is null or order_versions.superseded_on > carried_customers.state_date)
        and order_versions.order_date > {{ dbt.dateadd('day', -180, 'carried_customers.state_date') }}
        and order_versions.order_date <= {{ dbt.dateadd('day', -90, 'carried_customers.as_of_date') }}
    group by carried_customers.customer_key, carried_customers.as_of_date

),

carried_order_history as (

    select
        carried_customers.customer_key,
        carried_customers.as_of_date,
        carried_customers.recency_days
            + {{ dbt.datediff('carried_customers.state_date', 'carried_customers.as_of_date', 'day') }}
            as recency_days,
        carried_customers.days_since_first_order
            + {{ dbt.datediff('carried_customers.state_date', 'carried_customers.as_of_date', 'day') }}
            as days_since_first_order,
        carried_customers.frequency,
        carried_customers.monetary,
        carried_customers.orders_last_90d - coalesce(window_exits.left_last_90d, 0) as orders_last_90d,
        carried_customers.orders_prev_90d
            + coalesce(window_exits.left_last_90d, 0)
            - coalesce(window_exits.left_prev_90d, 0) as orders_prev_90d,
        carried_customers.monetary_last_90d - coalesce(window_exits.left_last_90d_amount, 0)
            as monetary_last_90d,
        carried_customers.cancelled_orders,
        carried_customers.returned_orders

    from carried_customers
    left join window_exits
        on window_exits.customer_key = carried_customers.customer_key
        and window_exits.as_of_date = carried_customers.as_of_date

),

computed_customers as (

    select customer_dates.*
    from customer_dates
    where not exists (
        select 1 from carried_customers
        where carried_customers.customer_key = customer_dates.customer_key
            and carried_customers.as_of_date = customer_dates.as_of_date
    )

),

{% else %}

computed_customers as (

    select * from customer_dates

),

{% endif %}

orders_known_at_date as (

    select
        computed_customers.customer_key,
        computed_customers.as_of_date,
        order_versions.status,
        order_versions.amount_eur as amount,
        {{ dbt.datediff('order_versions.order_date', 'computed_customers.as_of_date', 'day') }} as days_before

    from computed_customers
    inner join order_versions
        on order_versions.customer_key = computed_customers.customer_key
        and order_versions.known_from <= computed_customers.as_of_date
        and (
            order_versions.superseded_on is null
            or order_versions.superseded_on > computed_customers.as_of_date
        )

),

computed_order_history as (

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

order_history as (

    select * from computed_order_history
    {% if is_incremental() %}
    union all
    select * from carried_order_history
    {% endif %}

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
