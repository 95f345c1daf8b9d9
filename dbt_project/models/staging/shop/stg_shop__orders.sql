with

orders as (

    select * from {{ ref('base_shop__orders') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, delivered_on desc
        ) as delivery_rank

    from orders

),

final as (

    select
        order_id, customer_id, ordered_at, order_date, status, amount, currency, channel, updated_at,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
