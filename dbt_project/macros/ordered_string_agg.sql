{#- The texts of a group joined in a given order: Spark (4.0 and later) writes the order outside the call. -#}
{% macro ordered_string_agg(expression, delimiter, order_by) -%}
    {{ return(adapter.dispatch('ordered_string_agg', 'crm')(expression, delimiter, order_by)) }}
{%- endmacro %}

{% macro default__ordered_string_agg(expression, delimiter, order_by) -%}
    string_agg({{ expression }}, {{ delimiter }} order by {{ order_by }})
{%- endmacro %}

{% macro spark__ordered_string_agg(expression, delimiter, order_by) -%}
    listagg({{ expression }}, {{ delimiter }}) within group (order by {{ order_by }})
{%- endmacro %}
