{#- dbt's datediff on Spark counts the boundaries crossed, as DuckDB and PostgreSQL do (2 hours from
    10:59 to 12:00), where dbt-spark's own measures elapsed time; the parts the project uses. dbt finds
    this first through the dispatch search order in dbt_project.yml. -#}
{% macro spark__datediff(first_date, second_date, datepart) -%}
    {%- set seconds = {'second': 1, 'minute': 60, 'hour': 3600} -%}
    {%- if datepart == 'day' -%}
        datediff(cast({{ second_date }} as date), cast({{ first_date }} as date))
    {%- elif datepart in seconds -%}
        cast(floor(unix_seconds(cast({{ second_date }} as timestamp)) / {{ seconds[datepart] }})
            - floor(unix_seconds(cast({{ first_date }} as timestamp)) / {{ seconds[datepart] }}) as bigint)
    {%- else -%}
        {% do exceptions.raise_compiler_error('datediff on Spark: ' ~ datepart ~ ' is not implemented (day, hour, minute, second)') %}
    {%- endif -%}
{%- endmacro %}
