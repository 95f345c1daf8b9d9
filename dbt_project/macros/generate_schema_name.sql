{#- Models land in the schema they name (staging, marts), not in <target>_<schema>, so every
    consumer reads one stable name: marts.customer_features. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
