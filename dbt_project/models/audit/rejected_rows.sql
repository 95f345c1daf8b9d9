{#- Quarantine: every raw row that did not make it into staging, with source, key, reason and load
    date. Lines that could not even be parsed at load time are included from the load's own log. -#}
with

customers as (

    select * from {{ ref('base_crm__customers') }} where rejection_reason is not null

),

orders as (

    select * from {{ ref('base_shop__orders') }} where rejection_reason is not null

),

unparseable as (

    select * from {{ source('landing', '_rejected_rows') }}

),

final as (

    select
        'customers' as source,
        'staging' as rejected_at,
        raw_customer_id as record_key,
        rejection_reason as reason,
        delivered_on as partition_date,
        loaded_at
    from customers

    union all

    select 'orders', 'staging', raw_order_id, rejection_reason, delivered_on, loaded_at
    from orders

    union all

    select source, 'load', 'line ' || cast(line_number as varchar), reason, partition_date, loaded_at
    from unparseable

)

select * from final
