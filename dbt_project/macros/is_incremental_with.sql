{#- True when the build is incremental and the model's table already has `column`. A table built
    before it had the column is then built in full once, as on a first build (the insert adds the
    column: on_schema_change='append_new_columns'). A unit test has no table to look at: its
    is_incremental() override decides. -#}
{% macro is_incremental_with(column) -%}
    {%- if not is_incremental() -%}
        {{ return(false) }}
    {%- elif model.resource_type == 'unit_test' -%}
        {{ return(true) }}
    {%- endif -%}
    {{ return(column in (adapter.get_columns_in_relation(this) | map(attribute='name') | list)) }}
{%- endmacro %}
