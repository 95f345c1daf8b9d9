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

{#- Statistics cannot help where the planner misjudges a CTE's rows: customer_features' state logic
    gives about a hundred customer-dates for its estimate where there is one per customer and date,
    and PostgreSQL then joins them with the order history in a nested loop, quadratic in customers
    (the training dates' build ran for more than 4 minutes at 100,000 customers; 27 s without nested
    loops). A pre-hook of such a model turns them off for its own transaction (set local); elsewhere
    it renders empty. -#}
{% macro without_nested_loops() -%}
    {{ return(adapter.dispatch('without_nested_loops')()) }}
{%- endmacro %}

{% macro default__without_nested_loops() -%}{%- endmacro %}

{% macro postgres__without_nested_loops() -%}
    set local enable_nestloop = off
{%- endmacro %}
