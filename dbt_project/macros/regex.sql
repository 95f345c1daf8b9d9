{#- Regular expressions differ per warehouse: dispatch, so the models stay portable. -#}

{% macro regex_full_match(expression, pattern) -%}
    {{ return(adapter.dispatch('regex_full_match', 'crm')(expression, pattern)) }}
{%- endmacro %}

{% macro duckdb__regex_full_match(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro default__regex_full_match(expression, pattern) -%}
    regexp_like({{ expression }}, '^(?:{{ pattern }})$')
{%- endmacro %}

{% macro regex_remove(expression, pattern) -%}
    {{ return(adapter.dispatch('regex_remove', 'crm')(expression, pattern)) }}
{%- endmacro %}

{% macro duckdb__regex_remove(expression, pattern) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '', 'g')
{%- endmacro %}

{% macro default__regex_remove(expression, pattern) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '')
{%- endmacro %}
