{#- One row per order of a known customer, with the amount in EUR. Orders whose customer is not in
    the customer master are left out here and listed in the quarantine (audit.rejected_rows). -#}
with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

currency_rates as (

    select * from {{ ref('currency_rates') }}

),

final as (

    select
        orders.order_id,
        identity.customer_key,
        orders.customer_id,
        orders.ordered_at,
        orders.order_date,
        orders.status,
        orders.amount,
        orders.currency,
        cast(round(orders.amount * currency_rates.eur_per_unit, 2) as double) as amount_eur,
        orders.channel

    from orders
    inner join identity on identity.customer_id = orders.customer_id
    inner join currency_rates on currency_rates.currency = orders.currency

)

select * from final
