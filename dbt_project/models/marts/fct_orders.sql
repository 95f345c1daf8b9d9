{#- One row per order of a known customer: its latest version, with the amount in EUR. Orders whose
    customer is not in the customer master are left out here and listed in the quarantine.
    Incremental: only orders with versions loaded since the last run are recomputed, from all of
    their versions, so the result equals a full refresh. -#}
{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['order_date']),
    on_schema_change='fail'
) }}

with

order_versions as (

    select * from {{ ref('int_order_versions') }}
    {% if is_incremental() %}
    where order_id in (
        select order_id from {{ ref('int_order_versions') }}
        where loaded_at > (select max(loaded_at) from {{ this }})
    )
    {% endif %}

),

ranked as (

    select
        *,
        row_number() over (partition by order_id order by updated_at desc, delivered_on desc) as version_rank

    from order_versions

),

final as (

    select
        order_id, customer_key, customer_id, ordered_at, order_date, status, amount, currency, amount_eur,
        channel, updated_at, loaded_at

    from ranked
    where version_rank = 1

)

select * from final
