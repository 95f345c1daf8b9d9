{#- Every raw order row, typed, with the reason it is rejected (null when accepted). -#}
{{ config(materialized=suppressing_materialization()) }}

with

source as (

    select * from {{ source('shop', 'orders') }}
    -- Rows of erased customers stay out (macros/erasure.sql); audit.suppressed_rows counts them.
    where not {{ is_suppressed('orders') }}

),

currency_rates as (

    select * from {{ ref('currency_rates') }}

),

typed as (

    select
        cast(order_id as {{ type_text() }}) as raw_order_id,
        {{ dbt.safe_cast("order_id", api.Column.translate_type("bigint")) }} as order_id,
        {{ dbt.safe_cast("customer_id", api.Column.translate_type("bigint")) }} as customer_id,
        {{ dbt.safe_cast("ordered_at", api.Column.translate_type("timestamp")) }} as ordered_at,
        lower(trim(status)) as status,
        {{ dbt.safe_cast("amount", type_double()) }} as amount,
        upper(trim(currency)) as currency,
        lower(trim(channel)) as channel,
        {{ dbt.safe_cast("updated_at", api.Column.translate_type("timestamp")) }} as updated_at,
        _partition_date as delivered_on,
        _loaded_at as loaded_at,
        -- the delivered file, so that the quarantine names it
        _source_file as source_file

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
            when amount is not null and not {{ is_finite_number('amount') }} then 'amount not a finite number'
            -- An amount of 0 is a free or promotional order: an order, not a defect.
            when amount is null or amount < 0 then 'missing or negative amount'
            -- The accepted currencies are the deployment's configuration: the seed currency_rates.
            when currency is null or currency not in (select currency from currency_rates)
                then 'unknown currency (not in seed currency_rates)'
            -- An order cannot be placed after the day it was delivered (one day of clock skew allowed).
            when ordered_at > {{ dbt.dateadd('day', 2, 'delivered_on') }} then 'ordered_at in the future'
            when ordered_at < cast('{{ var("earliest_plausible_date") }}' as date) then 'ordered_at implausibly early'
        end as rejection_reason

    from typed

)

select * from final
