{#- One row per support ticket of a known customer (latest state). Tickets of customers missing from
    the customer master stay visible in staging only. -#}
with

tickets as (

    select * from {{ ref('stg_service__tickets') }}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

final as (

    select
        tickets.ticket_id,
        identity.customer_key,
        tickets.created_at,
        tickets.resolved_at,
        -- Divided as a double: Spark divides by a decimal literal at six decimal places.
        cast({{ dbt.datediff('tickets.created_at', 'tickets.resolved_at', 'second') }} as {{ type_double() }})
            / 3600 as hours_to_resolve,
        tickets.channel,
        tickets.category,
        tickets.priority,
        tickets.csat,
        tickets.resolved_at is not null as is_resolved

    from tickets
    inner join identity on identity.customer_id = tickets.customer_id

)

select * from final
