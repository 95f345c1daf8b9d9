{#- Quarantine: every raw row that did not make it into staging, with source, file, key, reason and
    load date. Lines that could not even be parsed at load time are included from the load's own log,
    and order rows accepted in staging but kept out of the marts because their customer is not in
    the customer master are included as rejected at `marts`. `source` is the landing source name,
    as in raw.<source>.
    Incremental: a row's outcome in staging never changes, so a build adds only the rows loaded
    since the newest one kept (checking every raw row again cost a full scan of the history each
    day). The pre-hook first drops what can change: the load's unparseable lines (a small table,
    taken again whole) and the `marts` rows of customers the master now knows. `customer_id` lets
    an erasure find an erased customer's quarantined rows. A table built before it had that
    column is emptied and built again in full once. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ prune_rejected_rows() }}"
) }}

{%- set incremental = is_incremental_with('customer_id') -%}
{#- (landing source, base model, raw key column, customer id column or none) -#}
{%- set base_models = [
    ('customers', 'base_crm__customers', 'raw_customer_id', 'customer_id'),
    ('orders', 'base_shop__orders', 'raw_order_id', 'customer_id'),
    ('order_items', 'base_shop__order_items', 'raw_order_item_key', none),
    ('products', 'base_shop__products', 'raw_product_id', none),
    ('tickets', 'base_service__tickets', 'raw_ticket_id', 'customer_id'),
    ('surveys', 'base_surveys__responses', 'raw_response_id', 'customer_id'),
    ('campaigns', 'base_marketing__campaigns', 'raw_campaign_variant_key', none),
    ('marketing_events', 'base_marketing__events', 'raw_event_id', 'customer_id'),
    ('web_sessions', 'base_web__sessions', 'raw_session_id', 'customer_id'),
] -%}

with

{% for source_name, model, key_column, customer_column in base_models %}
{{ source_name }} as (

    select * from {{ ref(model) }}
    where rejection_reason is not null
    {%- if incremental %}
        and loaded_at > (select {{ rejected_rows_watermark() }} from {{ this }})
    {%- endif %}

),
{% endfor %}

orders_of_unknown_customers as (

    select * from {{ ref('base_shop__orders') }}
    where rejection_reason is null
        and customer_id not in (select customer_id from {{ ref('int_customer_identity') }})
    {%- if incremental %}
        and loaded_at > (select {{ rejected_rows_watermark() }} from {{ this }})
    {%- endif %}

),

unparseable as (

    select * from {{ source('landing', '_rejected_rows') }}

),

final as (

    {% for source_name, model, key_column, customer_column in base_models %}
    select
        '{{ source_name }}' as source,
        'staging' as rejected_at,
        {{ key_column }} as record_key,
        rejection_reason as reason,
        delivered_on as partition_date,
        loaded_at,
        {{ customer_column or 'cast(null as bigint)' }} as customer_id,
        source_file
    from {{ source_name }}

    union all
    {% endfor %}

    select 'orders', 'marts', raw_order_id, 'customer not in the customer master', delivered_on, loaded_at,
        customer_id, source_file
    from orders_of_unknown_customers

    union all

    -- a line that could not be parsed, or a record the load refused whole (conflicting versions)
    select source, 'load', coalesce(record_key, 'line ' || cast(line_number as {{ type_text() }})), reason, partition_date,
        loaded_at,
        cast(null as bigint), source_file
    from unparseable

)

select * from final
