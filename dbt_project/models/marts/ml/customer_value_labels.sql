{#- What each customer actually did in the `clv_horizon_days` after as-of date D: completed orders and
    their revenue in EUR, the outcome the lifetime-value models predict. A label is observed only once
    the whole horizon lies within delivered data. Built, like the churn labels, at the training dates
    and at the scoring dates whose horizon has closed (monitoring's backtests); incremental, each build
    keeping the other's dates. -#}
{{ config(tags=['training', 'monitoring']) }}
{%- set horizon_days = var('clv_horizon_days') -%}

with

features as (

    select customer_key, as_of_date from {{ ref('customer_features') }}
    where as_of_date in (select as_of_date from {{ ref('int_as_of_dates') }})

),

orders as (

    select * from {{ ref('fct_orders') }} where status = 'completed'

),

horizon as (

    select * from {{ ref('int_data_horizon') }}

),

orders_in_horizon as (

    select
        features.customer_key,
        features.as_of_date,
        count(orders.order_id) as completed_orders_in_horizon,
        coalesce(sum(orders.amount_eur), 0) as revenue_eur_in_horizon

    from features
    left join orders
        on orders.customer_key = features.customer_key
        and orders.order_date > features.as_of_date
        and orders.order_date <= {{ dbt.dateadd('day', horizon_days, 'features.as_of_date') }}
    group by features.customer_key, features.as_of_date

),

final as (

    select
        orders_in_horizon.customer_key,
        orders_in_horizon.as_of_date,
        cast({{ horizon_days }} as integer) as clv_horizon_days,
        cast(orders_in_horizon.completed_orders_in_horizon as integer) as completed_orders_in_horizon,
        cast({{ round_double('orders_in_horizon.revenue_eur_in_horizon', 2) }} as {{ type_double() }})
            as revenue_eur_in_horizon,
        {{ dbt.dateadd('day', horizon_days, 'orders_in_horizon.as_of_date') }} <= horizon.horizon_date
            as is_label_observed

    from orders_in_horizon
    cross join horizon

)

select * from final
