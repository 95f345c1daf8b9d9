{#- Every raw order row, typed, with the reason it is rejected (null when accepted). -#}
with

source as (

    select * from {{ source('shop', 'orders') }}

),

typed as (

    select
        cast(order_id as varchar) as raw_order_id,
        try_cast(order_id as bigint) as order_id,
        try_cast(customer_id as bigint) as customer_id,
        try_cast(ordered_at as timestamp) as ordered_at,
        lower(trim(status)) as status,
        try_cast(amount as double) as amount,
        upper(trim(currency)) as currency,
        lower(trim(channel)) as channel,
        try_cast(updated_at as timestamp) as updated_at,
        _partition_date as delivered_on,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        *,
        cast(ordered_at as date) as order_date,
        case
            when order_id is null then 'missing or invalid order_id'
            when customer_id is null then 'missing or invalid customer_id'
            when ordered_at is null then 'missing or invalid ordered_at'
            when status not in ('completed', 'cancelled', 'returned') or status is null then 'unknown status'
            when amount is null or amount <= 0 then 'missing, zero or negative amount'
            when currency not in ('EUR', 'CHF', 'GBP') or currency is null then 'unknown currency'
            -- An order cannot be placed after the day it was delivered (one day of clock skew allowed).
            when ordered_at > {{ dbt.dateadd('day', 2, 'delivered_on') }} then 'ordered_at in the future'
        end as rejection_reason

    from typed

)

select * from final
