{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. Incremental
    (macros/incremental_versions.sql): a daily build ranks only the new deliveries and the versions
    kept of their keys. -#}
{{ config(
    materialized='incremental',
    unique_key=['order_id', 'line_number'],
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['delivered_on']),
    on_schema_change='append_new_columns'
) }}

with

order_items as (

    {{ versions_to_rank(
        ref('base_shop__order_items'),
        key_columns=['order_id', 'line_number'],
        columns=[
            'order_id', 'line_number', 'product_id', 'quantity', 'unit_price', 'delivered_on'
        ]
    ) }}

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
        delivered_on,
        loaded_at

    from ranked
    where delivery_rank = 1

)

select * from final
