{#- One row per order line of an order of a known customer (the orders in fct_orders), with the
    product's category. Lines whose order was quarantined or belongs to an unknown customer stay
    visible in staging only. -#}
with

order_items as (

    select * from {{ ref('stg_shop__order_items') }}

),

products as (

    select * from {{ ref('stg_shop__products') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

known_orders as (

    select orders.order_id

    from orders
    inner join identity on identity.customer_id = orders.customer_id

),

final as (

    select
        order_items.order_id,
        order_items.line_number,
        order_items.product_id,
        products.category as product_category,
        order_items.quantity,
        order_items.unit_price,
        order_items.line_amount

    from order_items
    inner join known_orders on known_orders.order_id = order_items.order_id
    left join products on products.product_id = order_items.product_id

)

select * from final
