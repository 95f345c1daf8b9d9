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

{% macro postgres__regex_full_match(expression, pattern) -%}
    ({{ expression }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}

{% macro regex_remove(expression, pattern) -%}
    {{ return(adapter.dispatch('regex_remove', 'crm')(expression, pattern)) }}
{%- endmacro %}

{#- DuckDB and PostgreSQL both replace only the first match unless told 'g'. -#}
{% macro default__regex_remove(expression, pattern) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '', 'g')
{%- endmacro %}

{#- Spark's regexp_replace replaces every match; its fourth argument is a position, not flags. -#}
{% macro spark__regex_remove(expression, pattern) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '')
{%- endmacro %}

{% macro regex_replace(expression, pattern, replacement) -%}
    {{ return(adapter.dispatch('regex_replace', 'crm')(expression, pattern, replacement)) }}
{%- endmacro %}

{% macro default__regex_replace(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{#- Free text with email addresses and phone numbers replaced by placeholders, so that text features
    (and the vocabulary a model stores) never hold contact details. -#}
{% macro mask_contact_details(expression) -%}
    {%- set rules = var('contact_rules') -%}
    {{ regex_replace(regex_replace(expression, rules['email_in_text'], ' email_address '),
                     rules['phone_in_text'], ' phone_number ') }}
{%- endmacro %}

{% macro spark__regex_replace(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '{{ replacement }}')
{%- endmacro %}
