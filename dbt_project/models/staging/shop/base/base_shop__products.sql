{#- Every raw catalog row, typed, with the reason it is rejected (null when accepted). -#}
with

source as (

    select * from {{ source('shop', 'products') }}

),

typed as (

    select
        product_id as raw_product_id,
        {{ dbt.safe_cast("trim(product_id)", api.Column.translate_type("bigint")) }} as product_id,
        trim(product_name) as product_name,
        lower(trim(category)) as category,
        {{ dbt.safe_cast("trim(list_price)", type_double()) }} as list_price,
        {{ dbt.safe_cast("trim(updated_at)", api.Column.translate_type("timestamp")) }} as updated_at,
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
            when product_id is null then 'missing or invalid product_id'
            when updated_at is null then 'missing or invalid updated_at'
            when list_price is not null and not {{ is_finite_number('list_price') }} then 'list_price not a finite number'
            when list_price is null or list_price < 0 then 'missing, invalid or negative list_price'
        end as rejection_reason

    from typed

)

select * from final
