{#- True for a real number; false for null, NaN and the infinities that a text such as `1e400` or
    `inf` casts to as a double, so that such amounts are quarantined instead of poisoning sums.
    NaN compares false (or above every number, in DuckDB) with `between`, so no dialect function is needed. -#}
{% macro is_finite_number(expression) -%}
    coalesce({{ expression }} between -1.7976931348623157e308 and 1.7976931348623157e308, false)
{%- endmacro %}
