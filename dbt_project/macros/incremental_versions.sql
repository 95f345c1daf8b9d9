{#- Incremental deduplication for staging tables that keep one delivered version per key.

    A full build ranks every accepted row of `base`. An incremental build ranks only the rows loaded
    since the table's newest `loaded_at` together with the row the table keeps for each of their
    keys: the kept row already won against every older row, so ranking it with the new ones gives
    what ranking all rows would. The model deletes and reinserts the keys this touches.

    A table built before it had a `loaded_at` column is rebuilt in full once (is_incremental_with). -#}
{% macro versions_to_rank(base, key_columns, columns) -%}
    {%- set incremental = is_incremental_with('loaded_at') -%}
    {%- set column_list = (columns + ['loaded_at']) | join(', ') -%}
    select {{ column_list }} from {{ base }}
    where rejection_reason is null
    {%- if incremental %}
        and loaded_at > (select max(loaded_at) from {{ this }})

    union all

    select {{ column_list }} from {{ this }} as kept
    where exists (
        select 1 from {{ base }} as delivered
        where delivered.rejection_reason is null
            and delivered.loaded_at > (select max(loaded_at) from {{ this }})
            {%- for key in key_columns %}
            and delivered.{{ key }} = kept.{{ key }}
            {%- endfor %}
    )
    {%- endif %}
{%- endmacro %}
