{#- One row per order of a known customer: its latest version, with the amount in EUR. Orders whose
    customer is not in the customer master are left out here and listed in the quarantine. -#}
with

order_versions as (

    select * from {{ ref('int_order_versions') }}

),

ranked as (

    select
        *,
        row_number() over (partition by order_id order by updated_at desc, delivered_on desc) as version_rank

    from order_versions

),

final as (

    select
        order_id, customer_key, customer_id, ordered_at, order_date, status, amount, currency, amount_eur,
        channel

    from ranked
    where version_rank = 1

)

select * from final
