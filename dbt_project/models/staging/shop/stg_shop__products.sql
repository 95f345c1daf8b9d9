with

products as (

    select * from {{ ref('base_shop__products') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by product_id order by updated_at desc, delivered_on desc, loaded_at desc
        ) as delivery_rank

    from products

),

final as (

    select
        product_id,
        product_name,
        category,
        list_price,
        updated_at,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
