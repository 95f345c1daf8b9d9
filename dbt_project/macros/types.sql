{#- Type names differ per warehouse (PostgreSQL has no `double`, and its `varchar` is another type
    than the `text` that its string functions return): models cast through these. Contracts use the
    standard names `double precision` and `text`, which DuckDB reads as its DOUBLE and VARCHAR. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'crm')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}

{% macro duckdb__type_double() -%}double{%- endmacro %}

{% macro spark__type_double() -%}double{%- endmacro %}

{% macro type_text() -%}
    {{ return(adapter.dispatch('type_text', 'crm')()) }}
{%- endmacro %}

{% macro default__type_text() -%}text{%- endmacro %}

{% macro duckdb__type_text() -%}varchar{%- endmacro %}

{#- Spark's varchar needs a length and is another type than its functions' string. -#}
{% macro spark__type_text() -%}string{%- endmacro %}

{#- round(x, digits) of a double as DuckDB computes it (half away from zero on x * 10^digits);
    PostgreSQL has no round(double precision, integer), and rounding through numeric would round
    1.665 (stored as 1.66499...) up where DuckDB rounds it down. -#}
{% macro round_double(expression, digits) -%}
    {{ return(adapter.dispatch('round_double', 'crm')(expression, digits)) }}
{%- endmacro %}

{% macro default__round_double(expression, digits) -%}
    round({{ expression }}, {{ digits }})
{%- endmacro %}

{% macro postgres__round_double(expression, digits) -%}
    {%- set value = "cast(" ~ expression ~ " as double precision)" -%}
    (sign({{ value }}) * floor(abs({{ value }}) * {{ 10 ** digits }} + 0.5) / {{ 10 ** digits }})
{%- endmacro %}

{#- Spark rounds a double through its decimal text (69.945 to 69.95) where DuckDB rounds the binary
    value (69.94499... to 69.94): the same arithmetic as on PostgreSQL. -#}
{% macro spark__round_double(expression, digits) -%}
    {%- set value = "cast(" ~ expression ~ " as double)" -%}
    (sign({{ value }}) * floor(abs({{ value }}) * {{ 10 ** digits }} + 0.5) / {{ 10 ** digits }})
{%- endmacro %}
