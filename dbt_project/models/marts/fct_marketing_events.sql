{#- One row per marketing event of a known customer. Events of customers missing from the customer
    master stay visible in staging only. -#}
with

events as (

    select * from {{ ref('stg_marketing__events') }}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

final as (

    select
        events.event_id,
        events.campaign_id,
        events.variant,
        identity.customer_key,
        events.event_type,
        events.event_at,
        events.revenue

    from events
    inner join identity on identity.customer_id = events.customer_id

)

select * from final
