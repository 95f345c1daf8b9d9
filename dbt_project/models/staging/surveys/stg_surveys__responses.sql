{#- A table, not a view: its data tests and the models that read it (features, facts, feedback text)
    would each rank every delivered version again. -#}
{{ config(materialized='table') }}

with

responses as (

    select * from {{ ref('base_surveys__responses') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by response_id order by delivered_on, loaded_at
        ) as delivery_rank

    from responses

),

final as (

    select
        response_id,
        customer_id,
        responded_at,
        nps,
        csat,
        comment,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
