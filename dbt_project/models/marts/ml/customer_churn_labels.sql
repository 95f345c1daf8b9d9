{#- Churn label per customer and as-of date D: no completed order in the `churn_window_days` after D.
    A label is observed only once the whole window lies within delivered data. Never built by the daily
    build: the training-data build computes the training and validation dates, and the monitoring step
    (ml.monitoring) the scoring dates whose window has closed, for the backtests. Incremental: a build
    replaces the dates it computes and keeps the others, so the two builds never undo each other. -#}
{{ config(tags=['training', 'monitoring']) }}
{%- set window_days = var('churn_window_days') -%}

with

features as (

    select customer_key, as_of_date from {{ ref('customer_features') }}
    where as_of_date in (select as_of_date from {{ ref('int_as_of_dates') }})

),

orders as (

    select * from {{ ref('fct_orders') }}

),

horizon as (

    select * from {{ ref('int_data_horizon') }}

),

orders_in_window as (

    select
        features.customer_key,
        features.as_of_date,
        count(orders.order_id) as completed_orders_in_window

    from features
    left join orders
        on orders.customer_key = features.customer_key
        and orders.status = 'completed'
        and orders.order_date > features.as_of_date
        and orders.order_date <= {{ dbt.dateadd('day', window_days, 'features.as_of_date') }}
    group by features.customer_key, features.as_of_date

),

final as (

    select
        orders_in_window.customer_key,
        orders_in_window.as_of_date,
        cast({{ window_days }} as integer) as churn_window_days,
        orders_in_window.completed_orders_in_window = 0 as is_churned,
        {{ dbt.dateadd('day', window_days, 'orders_in_window.as_of_date') }} <= horizon.horizon_date
            as is_label_observed

    from orders_in_window
    cross join horizon

)

select * from final
