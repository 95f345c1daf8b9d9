{#- delete+insert on Apache Spark's Parquet tables, so that every incremental model keeps one logic on
    DuckDB, PostgreSQL and Spark: the rows whose unique key the new rows carry are replaced by them.
    dbt-spark offers delete+insert on no table format, and merge only on Delta, Iceberg and Hudi; a
    Parquet table cannot be updated in place, nor overwritten by a query that reads it. So the table is
    written anew beside the old one (the kept rows and the new ones), then swapped in: between the drop
    and the rename a reader finds no table, and a failure before the drop leaves the old table as it
    was. With Delta or Iceberg (their jars on the cluster, file_format set in dbt_project.yml) the
    models can take dbt-spark's own merge instead. -#}
{#- These two override dbt-spark's macros of the same names (the project's macros come first). -#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- if raw_strategy not in ['delete+insert', 'append', 'insert_overwrite', 'merge'] -%}
        {% do exceptions.raise_compiler_error(
            'incremental strategy ' ~ raw_strategy ~ ' on Spark: expected delete+insert, append, insert_overwrite or merge') %}
    {%- elif raw_strategy == 'merge' and file_format not in ['delta', 'iceberg', 'hudi'] -%}
        {% do exceptions.raise_compiler_error('merge on Spark needs file_format delta, iceberg or hudi, not ' ~ file_format) %}
    {%- endif -%}
    {% do return(raw_strategy) %}
{% endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy == 'append' -%}
        {{ get_insert_into_sql(source, target) }}
    {%- elif strategy == 'insert_overwrite' -%}
        {{ get_insert_overwrite_sql(source, target, existing) }}
    {%- elif strategy == 'merge' -%}
        {{ get_merge_sql(target, source, unique_key, dest_columns=none, incremental_predicates=incremental_predicates) }}
    {%- else -%}
        {%- set keys = [unique_key] if unique_key is string else unique_key -%}
        {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
        {%- set matches = [] -%}
        {%- for key in keys -%}{% do matches.append('new_rows.' ~ key ~ ' = kept.' ~ key) %}{%- endfor -%}
        {%- set rewritten = target.incorporate(path={"identifier": target.identifier ~ '__dbt_rewrite'}) -%}
        {%- set rows -%}
            select {{ columns }} from {{ target }} as kept
            where not exists (select 1 from {{ source }} as new_rows where {{ matches | join(' and ') }})
            union all
            select {{ columns }} from {{ source }}
        {%- endset -%}
        {% do run_query('drop table if exists ' ~ rewritten) %}
        {% do run_query(create_table_as(False, rewritten, rows)) %}
        {% do run_query('drop table ' ~ target) %}
        alter table {{ rewritten }} rename to {{ target }}
    {%- endif -%}
{% endmacro %}
