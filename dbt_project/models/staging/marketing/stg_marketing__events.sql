{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. -#}
{{ config(materialized='table') }}

with

events as (

    select * from {{ ref('base_marketing__events') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by event_id order by delivered_on, loaded_at
        ) as delivery_rank

    from events

),

final as (

    select
        event_id,
        campaign_id,
        variant,
        customer_id,
        event_type,
        event_at,
        revenue,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
