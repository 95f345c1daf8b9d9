{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. -#}
{{ config(materialized='table') }}

with

orders as (

    select * from {{ ref('base_shop__orders') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, delivered_on desc
        ) as delivery_rank

    from orders

),

final as (

    select
        order_id, customer_id, ordered_at, order_date, status, amount, currency, channel, updated_at,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
