{#- The recommendations of the latest scoring date, ready for BI: per customer the ranked products
    with their name, category and list price, the reason in words and the model version that chose
    them. Older dates stay in scores.recommendations. -#}
with

recommendations as (

    select * from {{ source('scores', 'recommendations') }}

),

products as (

    select * from {{ ref('stg_shop__products') }}

),

latest as (

    select * from recommendations
    where as_of_date = (select max(as_of_date) from recommendations)

),

final as (

    select
        latest.customer_key,
        latest.as_of_date,
        latest.rank as recommendation_rank,
        latest.product_id,
        products.product_name,
        products.category as product_category,
        products.list_price,
        latest.score,
        latest.reason,
        latest.reason_product_id,
        latest.model_version,
        latest.run_id

    from latest
    left join products on products.product_id = latest.product_id

)

select * from final
