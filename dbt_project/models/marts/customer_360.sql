{#- The BI view of a customer: profile, RFM, the latest churn score, segment, satisfaction and lifetime
    value, with no raw PII.
    A customer may be emailed only with a consent on record, a valid email, and no unsubscribe in
    the email tool after the CRM record last changed (the CRM may not know of it yet). -#}
with

customers as (

    select * from {{ ref('dim_customers') }}

),

rfm as (

    select * from {{ ref('customer_rfm') }}

),

churn_scores as (

    select * from {{ source('scores', 'churn') }}

),

segment_scores as (

    select * from {{ source('scores', 'segments') }}

),

satisfaction_scores as (

    select * from {{ source('scores', 'satisfaction') }}

),

clv_scores as (

    select * from {{ source('scores', 'clv') }}

),

marketing_events as (

    select * from {{ ref('fct_marketing_events') }}

),

latest_churn as (

    select
        customer_key,
        churn_probability,
        as_of_date as churn_scored_as_of,
        model_version as churn_model_version,
        concat_ws(', ', driver_1, driver_2, driver_3) as churn_drivers,
        drivers_as_of as churn_drivers_as_of

    from churn_scores
    where as_of_date = (select max(as_of_date) from churn_scores)

),

latest_segment as (

    select customer_key, segment_name

    from segment_scores
    where as_of_date = (select max(as_of_date) from segment_scores)

),

latest_satisfaction as (

    select customer_key, satisfied_probability

    from satisfaction_scores
    where as_of_date = (select max(as_of_date) from satisfaction_scores)

),

latest_value as (

    select customer_key, expected_revenue_eur, value_tier, horizon_days as value_horizon_days

    from clv_scores
    where as_of_date = (select max(as_of_date) from clv_scores)

),

last_unsubscribes as (

    select customer_key, max(event_at) as last_unsubscribed_at

    from marketing_events
    where event_type = 'unsubscribe'
    group by customer_key

),

final as (

    select
        customers.customer_key,
        customers.signup_date,
        customers.birth_year,
        customers.gender,
        customers.city,
        customers.region,
        customers.country,
        customers.acquisition_channel,
        coalesce(customers.has_email_consent, false) as has_email_consent,
        coalesce(last_unsubscribes.last_unsubscribed_at > customers.updated_at, false) as has_unsubscribed_since,
        coalesce(customers.has_email_consent, false)
            and customers.email_hash is not null
            and not coalesce(last_unsubscribes.last_unsubscribed_at > customers.updated_at, false)
            as is_email_marketable,
        customers.source_records,
        rfm.recency_days,
        coalesce(rfm.frequency, 0) as frequency,
        coalesce(rfm.monetary, 0) as monetary,
        rfm.rfm_code,
        coalesce(rfm.rfm_segment, 'No purchase yet') as rfm_segment,
        latest_churn.churn_probability,
        case
            when latest_churn.churn_probability >= {{ var('churn_risk_bands')['high'] }} then 'high'
            when latest_churn.churn_probability >= {{ var('churn_risk_bands')['medium'] }} then 'medium'
            when latest_churn.churn_probability is not null then 'low'
        end as churn_risk_band,
        latest_churn.churn_scored_as_of,
        latest_churn.churn_model_version,
        nullif(latest_churn.churn_drivers, '') as churn_drivers,
        latest_churn.churn_drivers_as_of,
        latest_segment.segment_name,
        latest_satisfaction.satisfied_probability,
        latest_value.expected_revenue_eur,
        latest_value.value_tier,
        latest_value.value_horizon_days

    from customers
    left join rfm on rfm.customer_key = customers.customer_key
    left join latest_churn on latest_churn.customer_key = customers.customer_key
    left join latest_segment on latest_segment.customer_key = customers.customer_key
    left join latest_satisfaction on latest_satisfaction.customer_key = customers.customer_key
    left join latest_value on latest_value.customer_key = customers.customer_key
    left join last_unsubscribes on last_unsubscribes.customer_key = customers.customer_key

)

select * from final
