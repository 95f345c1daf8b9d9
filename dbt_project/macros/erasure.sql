{#- Right to be forgotten (crm.erasure): `crm erase` writes the keyed hashes (hash_pii, equal to
    crm.settings.Settings.hash_pii) of every erased customer id and of their order ids to
    raw._erased_ids. Staging drops the raw rows that match, so an erased customer stays erased when a
    later delivery or a full refresh brings the records back; audit.suppressed_rows counts them. -#}

{#- An id as the CRM delivers it, in one canonical text form: the integer, without spaces or sign. -#}
{% macro canonical_id(column) -%}
    {{ dbt.safe_cast("trim(cast(" ~ column ~ " as " ~ type_text() ~ "))", api.Column.translate_type("bigint")) }}
{%- endmacro %}

{#- The id kinds (customer_id, order_id, ...) that have at least one id on the suppression list:
    the var `erased_id_kinds`, which crm.pipeline.dbt_vars reads from raw._erased_ids before every
    build, so that compiled SQL depends on the run's vars, not on what the warehouse holds while dbt
    compiles (`crm erase` ends with a build, so a view never lags behind the list). Without the var
    (a bare dbt command, a unit test) every kind is checked: the full condition, correct but slower. -#}
{% macro erased_id_kinds() -%}
    {{ return(var('erased_id_kinds', none)) }}
{%- endmacro %}

{#- The materialization of a relation that leaves erased rows out (the base models): a view, except on
    Spark while ids are erased. There is_erased hashes the candidate ids with the PII key's pads,
    which a view would keep in its stored definition (spark__hash_pii refuses it), so the relation
    is a table, copied from its raw table at each build. -#}
{% macro suppressing_materialization() -%}
    {%- set erased_kinds = erased_id_kinds() -%}
    {%- set hashes = erased_kinds is none or erased_kinds | length > 0 -%}
    {{- return('table' if target.type == 'spark' and hashes else 'view') -}}
{%- endmacro %}

{#- True when the row's id is on the suppression list. Only the distinct ids of the relation are
    hashed (HMAC per row would cost a hash per order line), and only when ids of that kind have been
    erased at all: hashing every distinct id of a raw table is what made each staging view costly. -#}
{% macro is_erased(relation, id_column, id_kind='customer_id') -%}
    {%- set erased_kinds = erased_id_kinds() -%}
    {%- if erased_kinds is not none and id_kind not in erased_kinds -%}
        false
    {%- else -%}
    coalesce({{ canonical_id(id_column) }} in (
        select candidate_id
        from (select distinct {{ canonical_id(id_column) }} as candidate_id from {{ relation }}) as candidates
        where candidate_id is not null
            and {{ hash_pii('cast(candidate_id as ' ~ type_text() ~ ')') }} in (
                select id_hash from {{ source('erasure', '_erased_ids') }} where id_kind = '{{ id_kind }}'
            )
    ), false)
    {%- endif -%}
{%- endmacro %}

{#- The condition that suppresses a raw row of `source_name` (the landing source, as in raw.<source>):
    the row refers to an erased customer, or to an order of one (order lines carry only the order). -#}
{% macro is_suppressed(source_name) -%}
    {%- if source_name == 'customers' -%}
        {{ is_erased(source('crm', 'customers'), 'customer_id') }}
    {%- elif source_name == 'orders' -%}
        ({{ is_erased(source('shop', 'orders'), 'customer_id') }}
            or {{ is_erased(source('shop', 'orders'), 'order_id', 'order_id') }})
    {%- elif source_name == 'order_items' -%}
        ({{ is_erased(source('shop', 'order_items'), 'order_id', 'order_id') }}
            or coalesce({{ canonical_id('order_id') }} in (
                select {{ canonical_id('order_id') }}
                from {{ source('shop', 'orders') }}
                where {{ is_erased(source('shop', 'orders'), 'customer_id') }}
            ), false))
    {%- elif source_name == 'tickets' -%}
        {{ is_erased(source('service', 'tickets'), 'customer_id') }}
    {%- elif source_name == 'surveys' -%}
        {{ is_erased(source('surveys', 'surveys'), 'customer_id') }}
    {%- elif source_name == 'marketing_events' -%}
        {{ is_erased(source('marketing', 'marketing_events'), 'customer_id') }}
    {%- elif source_name == 'web_sessions' -%}
        {{ is_erased(source('web', 'web_sessions'), 'customer_id') }}
    {%- else -%}
        false
    {%- endif -%}
{%- endmacro %}
