{#- Nothing lost: for every source, raw rows = rows accepted into staging (before re-deliveries are
    collapsed) + rows quarantined in staging + rows of erased customers suppressed in staging.
    Returns the sources that do not add up. Counts the partitions from CRM_DBT_TESTS_SINCE on (all by
    default): a row's outcome never changes once its partition has reconciled. -#}
{%- set since = "cast('" ~ env_var('CRM_DBT_TESTS_SINCE', var('test_every_row_since')) ~ "' as date)" -%}
{%- set sources = [
    ('customers', source('crm', 'customers'), ref('base_crm__customers')),
    ('orders', source('shop', 'orders'), ref('base_shop__orders')),
    ('order_items', source('shop', 'order_items'), ref('base_shop__order_items')),
    ('products', source('shop', 'products'), ref('base_shop__products')),
    ('tickets', source('service', 'tickets'), ref('base_service__tickets')),
    ('surveys', source('surveys', 'surveys'), ref('base_surveys__responses')),
    ('campaigns', source('marketing', 'campaigns'), ref('base_marketing__campaigns')),
    ('marketing_events', source('marketing', 'marketing_events'), ref('base_marketing__events')),
    ('web_sessions', source('web', 'web_sessions'), ref('base_web__sessions')),
] -%}

with

raw_counts as (

    {%- for name, raw_relation, base_relation in sources %}
    select '{{ name }}' as source, count(*) as raw_rows from {{ raw_relation }}
    where _partition_date >= {{ since }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

accepted_counts as (

    {%- for name, raw_relation, base_relation in sources %}
    select '{{ name }}' as source, count(*) as accepted_rows
    from {{ base_relation }} where rejection_reason is null and delivered_on >= {{ since }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

rejected_counts as (

    select source, count(*) as rejected_rows
    from {{ ref('rejected_rows') }}
    where rejected_at = 'staging' and partition_date >= {{ since }}
    group by source

),

suppressed_counts as (

    select source, sum(suppressed_rows) as suppressed_rows
    from {{ ref('suppressed_rows') }}
    where partition_date >= {{ since }}
    group by source

),

final as (

    select
        raw_counts.source,
        raw_counts.raw_rows,
        accepted_counts.accepted_rows,
        coalesce(rejected_counts.rejected_rows, 0) as rejected_rows,
        coalesce(suppressed_counts.suppressed_rows, 0) as suppressed_rows

    from raw_counts
    inner join accepted_counts on accepted_counts.source = raw_counts.source
    left join rejected_counts on rejected_counts.source = raw_counts.source
    left join suppressed_counts on suppressed_counts.source = raw_counts.source

)

select * from final
where raw_rows <> accepted_rows + rejected_rows + suppressed_rows
