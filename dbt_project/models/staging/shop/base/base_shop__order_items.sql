{#- Every raw order line, typed, with the reason it is rejected (null when accepted). -#}
{{ config(materialized=suppressing_materialization()) }}

with

source as (

    select * from {{ source('shop', 'order_items') }}
    -- Rows of erased customers stay out (macros/erasure.sql); audit.suppressed_rows counts them.
    where not {{ is_suppressed('order_items') }}

),

typed as (

    select
        coalesce(cast(order_id as {{ type_text() }}), '') || '-' || coalesce(cast(line_number as {{ type_text() }}), '')
            as raw_order_item_key,
        {{ dbt.safe_cast("order_id", api.Column.translate_type("bigint")) }} as order_id,
        {{ dbt.safe_cast("line_number", api.Column.translate_type("integer")) }} as line_number,
        {{ dbt.safe_cast("product_id", api.Column.translate_type("bigint")) }} as product_id,
        {{ dbt.safe_cast("quantity", api.Column.translate_type("integer")) }} as quantity,
        {{ dbt.safe_cast("unit_price", type_double()) }} as unit_price,
        _partition_date as delivered_on,
        _loaded_at as loaded_at,
        -- the delivered file, so that the quarantine names it
        _source_file as source_file

    from source

),

final as (

    select
        *,
        case
            when order_id is null then 'missing or invalid order_id'
            when line_number is null or line_number < 1 then 'missing or invalid line_number'
            when product_id is null then 'missing or invalid product_id'
            when quantity is null or quantity <= 0 then 'missing, zero or negative quantity'
            when unit_price is not null and not {{ is_finite_number('unit_price') }} then 'unit_price not a finite number'
            when unit_price is null or unit_price < 0 then 'missing or negative unit_price'
        end as rejection_reason

    from typed

)

select * from final
