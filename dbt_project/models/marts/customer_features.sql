{#- Point-in-time features: at each as-of date D only customers signed up by D and orders placed
    on or before D count, so a feature never sees data from after its date. -#}
with

customers as (

    select * from {{ ref('dim_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

as_of_dates as (

    select * from {{ ref('int_as_of_dates') }}

),

customer_dates as (

    select
        customers.customer_key,
        customers.signup_date,
        as_of_dates.as_of_date

    from customers
    cross join as_of_dates
    where customers.signup_date <= as_of_dates.as_of_date

),

orders_known_at_date as (

    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        orders.status,
        orders.amount_eur as amount,
        {{ dbt.datediff('orders.order_date', 'customer_dates.as_of_date', 'day') }} as days_before

    from customer_dates
    inner join orders
        on orders.customer_key = customer_dates.customer_key
        and orders.order_date <= customer_dates.as_of_date

),

order_history as (

    select
        customer_key,
        as_of_date,
        min(case when status = 'completed' then days_before end) as recency_days,
        max(case when status = 'completed' then days_before end) as days_since_first_order,
        sum(case when status = 'completed' then 1 else 0 end) as frequency,
        sum(case when status = 'completed' then amount else 0 end) as monetary,
        sum(case when status = 'completed' and days_before < 90 then 1 else 0 end) as orders_last_90d,
        sum(case when status = 'completed' and days_before >= 90 and days_before < 180 then 1 else 0 end)
            as orders_prev_90d,
        sum(case when status = 'completed' and days_before < 90 then amount else 0 end) as monetary_last_90d,
        sum(case when status = 'cancelled' then 1 else 0 end) as cancelled_orders,
        sum(case when status = 'returned' then 1 else 0 end) as returned_orders

    from orders_known_at_date
    group by customer_key, as_of_date

),

final as (

    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        cast({{ dbt.datediff('customer_dates.signup_date', 'customer_dates.as_of_date', 'day') }} as integer)
            as tenure_days,
        cast(order_history.recency_days as integer) as recency_days,
        cast(order_history.days_since_first_order as integer) as days_since_first_order,
        cast(coalesce(order_history.frequency, 0) as integer) as frequency,
        cast(coalesce(order_history.monetary, 0) as double) as monetary,
        cast(
            case when order_history.frequency > 0 then order_history.monetary / order_history.frequency end
            as double
        ) as avg_order_value,
        cast(coalesce(order_history.orders_last_90d, 0) as integer) as orders_last_90d,
        cast(coalesce(order_history.orders_prev_90d, 0) as integer) as orders_prev_90d,
        cast(coalesce(order_history.monetary_last_90d, 0) as double) as monetary_last_90d,
        cast(coalesce(order_history.cancelled_orders, 0) as integer) as cancelled_orders,
        cast(coalesce(order_history.returned_orders, 0) as integer) as returned_orders

    from customer_dates
    left join order_history
        on order_history.customer_key = customer_dates.customer_key
        and order_history.as_of_date = customer_dates.as_of_date

)

select * from final
