{#- dbt's cross-database safe_cast falls back to a plain cast on DuckDB, which fails the whole build
    on one bad value. DuckDB's try_cast yields null instead, so the row can be quarantined. dbt finds
    this implementation first through the dispatch search order in dbt_project.yml. -#}
{% macro duckdb__safe_cast(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}
