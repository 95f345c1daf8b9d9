{#- A table, not a view: its data tests and the models that read it (features, facts, feedback text)
    would each rank every delivered version again. -#}
{{ config(materialized='table') }}

with

tickets as (

    select * from {{ ref('base_service__tickets') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        -- A ticket only moves forward (opened, resolved, rated): the most advanced record wins, so a
        -- late copy of the opening record cannot undo a resolution; then the latest delivery.
        row_number() over (
            partition by ticket_id
            order by
                case when csat is not null then 2 when resolved_at is not null then 1 else 0 end desc,
                delivered_on desc,
                loaded_at desc
        ) as delivery_rank

    from tickets

),

final as (

    select
        ticket_id,
        customer_id,
        created_at,
        resolved_at,
        channel,
        category,
        priority,
        description,
        csat,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
