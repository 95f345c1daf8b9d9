{#- The incremental quarantine (models/audit/rejected_rows.sql). -#}

{% macro rejected_rows_has_customer_id() -%}
    {{ return('customer_id' in (adapter.get_columns_in_relation(this) | map(attribute='name') | list)) }}
{%- endmacro %}

{#- The newest load kept; the earliest timestamp when nothing is kept yet. -#}
{% macro rejected_rows_watermark() -%}
    coalesce(max(loaded_at), cast('1900-01-01' as timestamp))
{%- endmacro %}

{#- Before an incremental build: drop the rows whose outcome can change since they were added. -#}
{% macro prune_rejected_rows() -%}
    {%- if is_incremental() and model.resource_type != 'unit_test' -%}
        {%- if rejected_rows_has_customer_id() -%}
            delete from {{ this }}
            where rejected_at = 'load'
                or (rejected_at = 'marts'
                    and customer_id in (select customer_id from {{ ref('int_customer_identity') }}))
        {%- else -%}
            delete from {{ this }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
