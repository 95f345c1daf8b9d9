{#- Who a campaign may email: one row per customer who may be emailed (customer_360's
    is_email_marketable: consent on record, a valid email, no unsubscribe since), with what a
    marketer targets by. The email tool matches recipients by the keyed email hash; no raw email
    leaves the restricted schemas. -#}
with

customers as (

    select * from {{ ref('customer_360') }}

),

profiles as (

    select * from {{ ref('dim_customers') }}

),

marketable as (

    select * from customers
    where is_email_marketable

),

final as (

    select
        marketable.customer_key,
        profiles.email_hash,
        profiles.email_masked,
        marketable.has_email_consent,
        marketable.country,
        marketable.rfm_segment,
        marketable.segment_name,
        marketable.churn_risk_band,
        marketable.churn_probability,
        marketable.satisfied_probability,
        marketable.churn_scored_as_of

    from marketable
    inner join profiles on profiles.customer_key = marketable.customer_key

)

select * from final
