{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. Incremental
    (macros/incremental_versions.sql): a daily build ranks only the new deliveries and the versions
    kept of their keys. -#}
{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['delivered_on']),
    on_schema_change='append_new_columns'
) }}

with

orders as (

    {{ versions_to_rank(
        ref('base_shop__orders'),
        key_columns=['order_id'],
        columns=[
            'order_id', 'customer_id', 'ordered_at', 'status', 'amount', 'currency', 'channel',
            'updated_at', 'delivered_on'
        ]
    ) }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, delivered_on desc, loaded_at desc
        ) as delivery_rank

    from orders

),

final as (

    select
        order_id, customer_id, ordered_at, cast(ordered_at as date) as order_date, status, amount, currency,
        channel, updated_at, delivered_on, loaded_at

    from ranked
    where delivery_rank = 1

)

select * from final
