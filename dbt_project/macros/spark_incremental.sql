{#- delete+insert on Apache Spark's Parquet tables, so that every incremental model keeps one logic on
    DuckDB, PostgreSQL and Spark: the rows whose unique key the new rows carry are replaced by them.
    dbt-spark offers delete+insert on no table format, and merge only on Delta, Iceberg and Hudi; a
    Parquet file cannot change rows. A model partitioned on Spark (partition_by, see
    partitioned_on_spark below) runs it as insert_overwrite of the partitions its new rows touch
    (spark_delete_insert_by_partition); an unpartitioned one, or one whose table was written before it
    was partitioned, is written anew beside the old table (the kept rows and the new ones) and swapped
    in: between the drop and the rename a reader finds no table, and a failure before the drop leaves
    the old table as it was. With Delta or Iceberg (their jars on the cluster, file_format set in
    dbt_project.yml) the models can take dbt-spark's own merge instead. -#}
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
        {%- set partition_by = config.get('partition_by') -%}
        {%- set partition = [partition_by] if partition_by is string else (partition_by or []) -%}
        {%- if partition and spark_partition_columns(target) == partition -%}
            {{ spark_delete_insert_by_partition(source, target, keys, partition) }}
        {%- else -%}
            {#- Unpartitioned, or written before the model was partitioned: rewritten whole (and
                partitioned as configured: create_table_as reads partition_by). -#}
            {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
            {%- set rewritten = target.incorporate(path={"identifier": target.identifier ~ '__dbt_rewrite'}) -%}
            {%- set rows -%}
                select {{ columns }} from {{ target }} as kept
                where not exists (select 1 from {{ source }} as new_rows where {{ spark_key_matches(keys) }})
                union all
                select {{ columns }} from {{ source }}
            {%- endset -%}
            {% do run_query('drop table if exists ' ~ rewritten) %}
            {% do run_query(create_table_as(False, rewritten, rows)) %}
            {% do run_query('drop table ' ~ target) %}
            alter table {{ rewritten }} rename to {{ target }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}

{#- delete+insert on a partitioned Parquet table: only the partitions the change touches are written
    again, by Spark's dynamic partition overwrite (the insert_overwrite strategy), so a daily build
    costs what it changes, not the table's size.
    - When the unique key is the partition (say as_of_date), the new rows are whole partitions: they
      overwrite theirs, as dbt-spark's insert_overwrite does.
    - Otherwise the new rows are stored first (the model's query may read this table), and the touched
      partitions are theirs and, unless the partition is part of the key, those of the rows they
      replace (a key whose new version moved to another partition). Each touched partition is
      overwritten with its rows not replaced and the new rows; one left empty is dropped. -#}
{% macro spark_delete_insert_by_partition(source, target, keys, partition) %}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set partition_list = partition | join(', ') -%}
    {% do run_query('set spark.sql.sources.partitionOverwriteMode = DYNAMIC') %}
    {%- if keys | reject('in', partition) | list | length == 0 -%}
        insert overwrite table {{ target }} partition ({{ partition_list }}) select {{ columns }} from {{ source }}
    {%- else -%}
        {%- set new_rows = target.incorporate(path={"identifier": target.identifier ~ '__dbt_new'}) -%}
        {% do run_query('drop table if exists ' ~ new_rows) %}
        {% do run_query('create table ' ~ new_rows ~ ' using parquet as select * from ' ~ source) %}
        {%- set replaced = 'exists (select 1 from ' ~ new_rows ~ ' as new_rows where ' ~ spark_key_matches(keys) ~ ')' -%}
        {%- set touched_query -%}
            select distinct {{ partition_list }} from {{ new_rows }}
            {%- if partition | reject('in', keys) | list | length > 0 %}
            union
            select distinct {{ partition_list }} from {{ target }} as kept where {{ replaced }}
            {%- endif %}
        {%- endset -%}
        {%- set touched = run_query(touched_query).rows | map('list') | list -%}
        {%- if touched | length > 0 -%}
            {%- set in_touched = [] -%}
            {%- for values in touched -%}
                {%- set equal = [] -%}
                {%- for column in partition -%}
                    {% do equal.append('kept.' ~ column ~ ' <=> ' ~ spark_partition_literal(values[loop.index0])) %}
                {%- endfor -%}
                {% do in_touched.append('(' ~ equal | join(' and ') ~ ')') %}
            {%- endfor -%}
            {%- set rows -%}
                select {{ columns }} from {{ target }} as kept
                where ({{ in_touched | join(' or ') }}) and not {{ replaced }}
                union all
                select {{ columns }} from {{ new_rows }}
            {%- endset -%}
            {%- set remaining = run_query('select distinct ' ~ partition_list ~ ' from (' ~ rows ~ ')').rows
                | map('list') | map('string') | list -%}
            {% do run_query('insert overwrite table ' ~ target ~ ' partition (' ~ partition_list ~ ') ' ~ rows) %}
            {%- for values in touched if (values | string) not in remaining -%}
                {%- set spec = [] -%}
                {%- for column in partition -%}
                    {% do spec.append(column ~ ' = ' ~ spark_partition_literal(values[loop.index0])) %}
                {%- endfor -%}
                {% do run_query('alter table ' ~ target ~ ' drop if exists partition (' ~ spec | join(', ') ~ ')') %}
            {%- endfor -%}
        {%- endif %}
        drop table {{ new_rows }}
    {%- endif -%}
{% endmacro %}

{% macro spark_key_matches(keys) -%}
    {%- set matches = [] -%}
    {%- for key in keys -%}{% do matches.append('new_rows.' ~ key ~ ' = kept.' ~ key) %}{%- endfor -%}
    {{ matches | join(' and ') }}
{%- endmacro %}

{#- A partition value as a literal (Spark casts it to the column's type). -#}
{% macro spark_partition_literal(value) -%}
    {%- if value is none -%}null{%- else -%}'{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'{%- endif -%}
{%- endmacro %}

{#- The partition columns of a Spark table, in order, from `describe table` (none when unpartitioned). -#}
{% macro spark_partition_columns(relation) %}
    {%- set described = run_query('describe table ' ~ relation).rows | map(attribute=0) | list -%}
    {%- if '# Partition Information' not in described -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set after = described[described.index('# Partition Information') + 1:] -%}
    {{ return(after | reject('equalto', '# col_name') | reject('equalto', '') | list) }}
{% endmacro %}

{#- partition_by for a model's config: the columns on Spark, none elsewhere (dbt-duckdb would warn
    that it partitions DuckLake tables only; PostgreSQL has no use for it). -#}
{% macro partitioned_on_spark(columns) -%}
    {{ return(columns if target.type == 'spark' else none) }}
{%- endmacro %}
