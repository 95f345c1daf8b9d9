{#- The incremental quarantine (models/audit/rejected_rows.sql). -#}

{#- The newest load kept; the earliest timestamp when nothing is kept yet. -#}
{% macro rejected_rows_watermark() -%}
    coalesce(max(loaded_at), cast('1900-01-01' as timestamp))
{%- endmacro %}

{#- Before an incremental build: drop the rows whose outcome can change since they were added, or
    every row of a table built before it had customer_id (the model then builds it in full). -#}
{% macro prune_rejected_rows() -%}
    {%- if is_incremental_with('customer_id') -%}
        {{ delete_rows(this, "rejected_at = 'load' or (rejected_at = 'marts' and customer_id in (select customer_id from "
                             ~ ref('int_customer_identity') ~ "))") }}
    {%- elif is_incremental() -%}
        {{ delete_rows(this, 'true') }}
    {%- endif -%}
{%- endmacro %}
