{#- PostgreSQL plans a query from table statistics, which a table just created or refilled does not
    have until autovacuum comes by: without them it takes a fresh mart for a few rows and joins it
    by nested loops (campaign_performance ran for over 15 minutes at 100,000 customers). Every table
    the project builds is analysed in its own post-hook. DuckDB needs nothing: the hook renders
    empty, which dbt skips. -#}
{% macro analyze_for_planner() -%}
    {{ return(adapter.dispatch('analyze_for_planner')()) }}
{%- endmacro %}

{% macro default__analyze_for_planner() -%}{%- endmacro %}

{% macro postgres__analyze_for_planner() -%}
    {%- if config.get('materialized') in ('table', 'incremental', 'snapshot', 'seed') -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
