{#- Quarantine: every raw row that did not make it into staging, with source, key, reason and load
    date. Lines that could not even be parsed at load time are included from the load's own log,
    and order rows accepted in staging but kept out of the marts because their customer is not in
    the customer master are included as rejected at `marts`. `source` is the landing source name,
    as in raw.<source>. -#}
{%- set base_models = [
    ('customers', 'base_crm__customers', 'raw_customer_id'),
    ('orders', 'base_shop__orders', 'raw_order_id'),
    ('order_items', 'base_shop__order_items', 'raw_order_item_key'),
    ('products', 'base_shop__products', 'raw_product_id'),
    ('tickets', 'base_service__tickets', 'raw_ticket_id'),
    ('surveys', 'base_surveys__responses', 'raw_response_id'),
    ('campaigns', 'base_marketing__campaigns', 'raw_campaign_variant_key'),
    ('marketing_events', 'base_marketing__events', 'raw_event_id'),
    ('web_sessions', 'base_web__sessions', 'raw_session_id'),
] -%}

with

{% for source_name, model, key_column in base_models %}
{{ source_name }} as (

    select * from {{ ref(model) }} where rejection_reason is not null

),
{% endfor %}

orders_of_unknown_customers as (

    select * from {{ ref('base_shop__orders') }}
    where rejection_reason is null
        and customer_id not in (select customer_id from {{ ref('int_customer_identity') }})

),

unparseable as (

    select * from {{ source('landing', '_rejected_rows') }}

),

final as (

    {% for source_name, model, key_column in base_models %}
    select
        '{{ source_name }}' as source,
        'staging' as rejected_at,
        {{ key_column }} as record_key,
        rejection_reason as reason,
        delivered_on as partition_date,
        loaded_at
    from {{ source_name }}

    union all
    {% endfor %}

    select 'orders', 'marts', raw_order_id, 'customer not in the customer master', delivered_on, loaded_at
    from orders_of_unknown_customers

    union all

    select source, 'load', 'line ' || cast(line_number as varchar), reason, partition_date, loaded_at
    from unparseable

)

select * from final
