{#- Quarantine: every raw row that did not make it into staging, with source, key, reason and load
    date. Lines that could not even be parsed at load time are included from the load's own log,
    and order rows accepted in staging but kept out of the marts because their customer is not in
    the customer master are included as rejected at `marts`.
    `source` is the landing source name, as in raw.<source>. -#}
with

customers as (

    select * from {{ ref('base_crm__customers') }} where rejection_reason is not null

),

orders as (

    select * from {{ ref('base_shop__orders') }} where rejection_reason is not null

),

orders_of_unknown_customers as (

    select * from {{ ref('base_shop__orders') }}
    where rejection_reason is null
        and customer_id not in (select customer_id from {{ ref('int_customer_identity') }})

),

order_items as (

    select * from {{ ref('base_shop__order_items') }} where rejection_reason is not null

),

products as (

    select * from {{ ref('base_shop__products') }} where rejection_reason is not null

),

tickets as (

    select * from {{ ref('base_service__tickets') }} where rejection_reason is not null

),

surveys as (

    select * from {{ ref('base_surveys__responses') }} where rejection_reason is not null

),

campaigns as (

    select * from {{ ref('base_marketing__campaigns') }} where rejection_reason is not null

),

marketing_events as (

    select * from {{ ref('base_marketing__events') }} where rejection_reason is not null

),

web_sessions as (

    select * from {{ ref('base_web__sessions') }} where rejection_reason is not null

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

    select 'order_items', 'staging', raw_order_item_key, rejection_reason, delivered_on, loaded_at
    from order_items

    union all

    select 'products', 'staging', raw_product_id, rejection_reason, delivered_on, loaded_at
    from products

    union all

    select 'tickets', 'staging', raw_ticket_id, rejection_reason, delivered_on, loaded_at
    from tickets

    union all

    select 'surveys', 'staging', raw_response_id, rejection_reason, delivered_on, loaded_at
    from surveys

    union all

    select 'campaigns', 'staging', raw_campaign_variant_key, rejection_reason, delivered_on, loaded_at
    from campaigns

    union all

    select 'marketing_events', 'staging', raw_event_id, rejection_reason, delivered_on, loaded_at
    from marketing_events

    union all

    select 'web_sessions', 'staging', raw_session_id, rejection_reason, delivered_on, loaded_at
    from web_sessions

    union all

    select 'orders', 'marts', raw_order_id, 'customer not in the customer master', delivered_on, loaded_at
    from orders_of_unknown_customers

    union all

    select source, 'load', 'line ' || cast(line_number as varchar), reason, partition_date, loaded_at
    from unparseable

)

select * from final
