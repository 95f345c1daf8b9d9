{#- Survivorship: the most recent non-null value of a column within a partition. -#}
{% macro last_non_null(column, partition_by, order_by) -%}
    {{ return(adapter.dispatch('last_non_null', 'crm')(column, partition_by, order_by)) }}
{%- endmacro %}

{% macro default__last_non_null(column, partition_by, order_by) -%}
    first_value({{ column }} ignore nulls) over (
        partition by {{ partition_by }} order by {{ order_by }}
        rows between unbounded preceding and unbounded following
    )
{%- endmacro %}

{#- PostgreSQL has no `ignore nulls`: the first element of the non-null values, aggregated in the
    window's order over the whole partition. -#}
{% macro postgres__last_non_null(column, partition_by, order_by) -%}
    (array_agg({{ column }}) filter (where {{ column }} is not null) over (
        partition by {{ partition_by }} order by {{ order_by }}
        rows between unbounded preceding and unbounded following
    ))[1]
{%- endmacro %}

{#- Spark: first_value's second argument skips nulls. -#}
{% macro spark__last_non_null(column, partition_by, order_by) -%}
    first_value({{ column }}, true) over (
        partition by {{ partition_by }} order by {{ order_by }}
        rows between unbounded preceding and unbounded following
    )
{%- endmacro %}
