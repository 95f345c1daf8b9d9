{#- When each order version was known: from the day it was delivered or the order was placed (the
    later of the two) until a version ranked above it (a later update, then a later delivery) was
    delivered. Point-in-time features read an order's version known at their date from here.
    Incremental: a run takes the versions loaded since the last run and ranks them again with the
    stored versions of the same orders only, so its cost follows the day's deliveries, not the
    history. -#}
{{ config(
    materialized='incremental',
    unique_key=['order_id', 'updated_at', 'delivered_on'],
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['delivered_on']),
    on_schema_change='fail'
) }}
{%- set version_columns = [
    'order_id', 'customer_key', 'order_date', 'status', 'amount_eur', 'updated_at', 'delivered_on', 'loaded_at'
] %}

with

order_versions as (

    select * from {{ ref('int_order_versions') }}

),

new_versions as (

    select {{ version_columns | join(', ') }}
    from order_versions
    {% if is_incremental() %}
    where loaded_at > (select max(loaded_at) from {{ this }})
    {% endif %}

),

{% if is_incremental() %}

stored_versions_of_changed_orders as (

    select {{ version_columns | join(', ') }}
    from {{ this }} as stored
    where stored.order_id in (select order_id from new_versions)
        and not exists (
            select 1 from new_versions
            where new_versions.order_id = stored.order_id
                and new_versions.updated_at = stored.updated_at
                and new_versions.delivered_on = stored.delivered_on
        )

),

versions as (

    select * from new_versions
    union all
    select * from stored_versions_of_changed_orders

),

{% else %}

versions as (

    select * from new_versions

),

{% endif %}

final as (

    select
        {{ version_columns | join(', ') }},
        greatest(order_date, delivered_on) as known_from,
        -- A version stops being known once one ranked above it has been delivered.
        min(delivered_on) over (
            partition by order_id
            order by updated_at desc, delivered_on desc
            rows between unbounded preceding and 1 preceding
        ) as superseded_on

    from versions

)

select * from final
