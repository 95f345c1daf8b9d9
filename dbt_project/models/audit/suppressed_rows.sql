{#- Raw rows that staging keeps out because they belong to an erased customer (crm erase; the
    suppression list raw._erased_ids), counted per source and delivery: the third outcome of a raw row
    beside accepted and quarantined. Counts only: no key of an erased customer is repeated here. -#}
{%- set suppressible_sources = [
    ('customers', source('crm', 'customers')),
    ('orders', source('shop', 'orders')),
    ('order_items', source('shop', 'order_items')),
    ('tickets', source('service', 'tickets')),
    ('surveys', source('surveys', 'surveys')),
    ('marketing_events', source('marketing', 'marketing_events')),
    ('web_sessions', source('web', 'web_sessions')),
] -%}

with

{% for source_name, relation in suppressible_sources %}
{{ source_name }} as (

    select
        '{{ source_name }}' as source,
        _partition_date as partition_date,
        count(*) as suppressed_rows

    from {{ relation }}
    where {{ is_suppressed(source_name) }}
    group by _partition_date

),
{% endfor %}

final as (

    {% for source_name, relation in suppressible_sources %}
    select * from {{ source_name }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from final
