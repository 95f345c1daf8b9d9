{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. -#}
{{ config(materialized='table') }}

with

order_items as (

    select * from {{ ref('base_shop__order_items') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by order_id, line_number order by delivered_on desc, loaded_at desc
        ) as delivery_rank

    from order_items

),

final as (

    select
        order_id,
        line_number,
        product_id,
        quantity,
        unit_price,
        quantity * unit_price as line_amount,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
