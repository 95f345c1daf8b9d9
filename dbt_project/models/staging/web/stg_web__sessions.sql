{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. -#}
{{ config(materialized='table') }}

with

sessions as (

    select * from {{ ref('base_web__sessions') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by session_id order by delivered_on, loaded_at
        ) as delivery_rank

    from sessions

),

final as (

    select
        session_id,
        customer_id,
        started_at,
        cast(started_at as date) as session_date,
        duration_seconds,
        pages_viewed,
        device,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
