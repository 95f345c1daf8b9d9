with

source as (

    select * from {{ source('shop', 'orders') }}

),

typed as (

    select
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,
        cast(ordered_at as timestamp) as ordered_at,
        cast(cast(ordered_at as timestamp) as date) as order_date,
        lower(trim(status)) as status,
        cast(amount as double) as amount,
        upper(trim(currency)) as currency,
        lower(trim(channel)) as channel,
        _partition_date as delivered_on

    from source

),

ranked as (

    select
        *,
        row_number() over (partition by order_id order by delivered_on desc) as delivery_rank

    from typed

),

final as (

    select
        order_id, customer_id, ordered_at, order_date, status, amount, currency, channel, delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
