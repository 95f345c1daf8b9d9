{#- Delete the rows of ``relation`` for which ``condition`` holds (a hook's statement). A Spark Parquet
    table cannot delete rows: the rows kept are written to a new table that replaces it (between the
    drop and the rename a reader finds no table; a failure before the drop changes nothing). -#}
{% macro delete_rows(relation, condition) -%}
    {{ return(adapter.dispatch('delete_rows', 'crm')(relation, condition)) }}
{%- endmacro %}

{% macro default__delete_rows(relation, condition) -%}
    delete from {{ relation }} where {{ condition }}
{%- endmacro %}

{% macro spark__delete_rows(relation, condition) -%}
    {%- set kept = relation.incorporate(path={"identifier": relation.identifier ~ '__dbt_kept'}) -%}
    {%- if execute -%}
        {% do run_query('drop table if exists ' ~ kept) %}
        {% do run_query(
            'create table ' ~ kept ~ ' using parquet as select * from ' ~ relation
            ~ ' where not coalesce(' ~ condition ~ ', false)') %}
        {% do run_query('drop table ' ~ relation) %}
    {%- endif -%}
    alter table {{ kept }} rename to {{ relation }}
{%- endmacro %}
