{#- Every accepted version of every order of a known customer, as delivered, with the resolved
    customer key and the amount in EUR. Point-in-time models pick, per order, the latest version
    delivered by their as-of date; fct_orders shows the latest version overall.
    Incremental: a run adds only rows loaded since the last run (by load time, so a late partition
    for an old day is still picked up); exact re-deliveries within one partition collapse. -#}
{{ config(
    materialized='incremental',
    unique_key=['order_id', 'updated_at', 'delivered_on'],
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['delivered_on'])
) }}

with

orders as (

    select * from {{ ref('base_shop__orders') }}
    where rejection_reason is null
    {% if is_incremental() %}
        and loaded_at > (select max(loaded_at) from {{ this }})
    {% endif %}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

currency_rates as (

    select * from {{ ref('currency_rates') }}

),

final as (

    select distinct
        orders.order_id,
        identity.customer_key,
        orders.customer_id,
        orders.ordered_at,
        orders.order_date,
        orders.status,
        orders.amount,
        orders.currency,
        cast({{ round_double("orders.amount * currency_rates.eur_per_unit", 2) }} as {{ type_double() }}) as amount_eur,
        orders.channel,
        orders.updated_at,
        orders.delivered_on,
        orders.loaded_at

    from orders
    inner join identity on identity.customer_id = orders.customer_id
    inner join currency_rates on currency_rates.currency = orders.currency

)

select * from final
