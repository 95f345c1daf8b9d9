{#- A cast that yields null for a value that does not convert, so that the row can be quarantined:
    dbt's cross-database safe_cast is a plain cast on DuckDB and PostgreSQL, which fails the whole
    build on one bad value. dbt finds these implementations first through the dispatch search order
    in dbt_project.yml. -#}
{% macro duckdb__safe_cast(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}

{#- Spark (3.2 and later) has try_cast too, but reads no integer from '12.0' or '1e3', as DuckDB does
    (rounding half away from zero): those go through a decimal, rounded as DuckDB rounds. -#}
{% macro spark__safe_cast(field, type) -%}
    {%- if type | trim | lower in ['bigint', 'int', 'integer', 'smallint'] -%}
        coalesce(try_cast({{ field }} as {{ type }}), try_cast(round(try_cast({{ field }} as decimal(38, 10))) as {{ type }}))
    {%- else -%}
        try_cast({{ field }} as {{ type }})
    {%- endif -%}
{%- endmacro %}

{#- PostgreSQL (before 16) has no try_cast: functions created by create_safe_cast_functions before
    every run, one per target type with an overload per argument type, which PostgreSQL picks by the
    field's type (text for a literal or a null). Other types (dbt's unit tests cast their fixtures
    through safe_cast too) take dbt's plain cast. -#}
{% macro postgres__safe_cast(field, type) -%}
    {%- set function_type = type | trim | lower | replace(' ', '_') -%}
    {%- if function_type in ['bigint', 'integer', 'double_precision', 'date', 'timestamp'] -%}
        {{ target.schema }}.crm_try_cast_{{ function_type }}({{ field }})
    {%- else -%}
        cast({{ field }} as {{ type }})
    {%- endif -%}
{%- endmacro %}

{#- The functions behind postgres__safe_cast, made to read what DuckDB's try_cast reads: integers
    from '12.0', '1e3' or ' 3.25 ' (rounded half away from zero), doubles beyond their range as
    infinity or zero, dates and timestamps only in ISO form (PostgreSQL alone would also read
    'yesterday', 'Jan 5 2024' or '20240105'). On other warehouses this is nothing. Parallel unsafe:
    their exception blocks are subtransactions, which PostgreSQL refuses inside a parallel plan
    (restricted was not enough once the tables had statistics and the planner chose parallel scans).
    Measured on a million values: about 0.9 s for the bigint function, 1.1 s for an exception-free SQL
    version (a regex, then a range check), 0.07 s for a plain cast; the regex costs what the
    subtransaction does, so these stay. Not matched: DuckDB also reads hexadecimal and binary
    integers ('0x1F', '0b101'), digits grouped by underscores ('1_000'), dates with '/' and years
    before 1 or after 9999; these give null here. -#}
{% macro create_safe_cast_functions() -%}
    {{ return(adapter.dispatch('create_safe_cast_functions', 'crm')()) }}
{%- endmacro %}

{#- Nothing: dbt skips a hook that renders empty. -#}
{% macro default__create_safe_cast_functions() -%}{%- endmacro %}

{% macro postgres__create_safe_cast_functions() -%}
    {%- set iso_date = "'^\\s*[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([ T]|\\s*$)'" -%}
    {%- set infinite = "case lower(trim(value)) when 'infinity' then 'infinity' when 'inf' then 'infinity' "
        ~ "when '-infinity' then '-infinity' when '-inf' then '-infinity' end" -%}
    create schema if not exists {{ target.schema }};
    {% for type in ['bigint', 'integer'] %}
    create or replace function {{ target.schema }}.crm_try_cast_{{ type }}(value text) returns {{ type }}
    language plpgsql immutable parallel unsafe as $$
    begin
        return cast(round(cast(value as numeric)) as {{ type }});
    exception when others then
        return null;
    end $$;
    {% endfor %}
    create or replace function {{ target.schema }}.crm_try_cast_double_precision(value text)
    returns double precision language plpgsql immutable parallel unsafe as $$
    begin
        if value ~* '^\s*[+-]?0x' then
            return null;
        end if;
        return cast(value as double precision);
    exception when others then
        begin
            return case
                when cast(value as numeric) > 1 then cast('infinity' as double precision)
                when cast(value as numeric) < -1 then cast('-infinity' as double precision)
                else cast(0 as double precision)
            end;
        exception when others then
            return null;
        end;
    end $$;
    {#- Typed columns (Parquet sources) need no text round trip: plain SQL that PostgreSQL inlines,
        so each value costs an expression, not a function call (a plpgsql call per value made the
        base views over typed tables about ten times slower than DuckDB). Doubles round half to even
        and yield null beyond the range or for NaN and the infinities, as DuckDB's try_cast does
        (NaN compares above every number in PostgreSQL). -#}
    {%- set typed = [
        ('bigint', 'bigint', 'value'),
        ('bigint', 'integer', 'cast(value as bigint)'),
        ('bigint', 'double precision', 'case when value >= -9223372036854775808 and value < 9223372036854775808 then cast(value as bigint) end'),
        ('integer', 'integer', 'value'),
        ('integer', 'bigint', 'case when value between -2147483648 and 2147483647 then cast(value as integer) end'),
        ('integer', 'double precision', 'case when value >= -2147483648.5 and value < 2147483647.5 then cast(value as integer) end'),
        ('double_precision', 'double precision', 'value'),
        ('double_precision', 'bigint', 'cast(value as double precision)'),
        ('double_precision', 'integer', 'cast(value as double precision)'),
        ('timestamp', 'timestamp', 'value'),
        ('timestamp', 'date', 'cast(value as timestamp)'),
        ('date', 'date', 'value'),
        ('date', 'timestamp', 'cast(value as date)'),
    ] -%}
    {% for target_type, argument_type, expression in typed %}
    create or replace function {{ target.schema }}.crm_try_cast_{{ target_type }}(value {{ argument_type }})
    returns {{ target_type | replace('_', ' ') }} language sql immutable parallel safe as $$ select {{ expression }} $$;
    {% endfor %}
    {% for type in ['date', 'timestamp'] %}
    create or replace function {{ target.schema }}.crm_try_cast_{{ type }}(value text) returns {{ type }}
    language plpgsql immutable parallel unsafe as $$
    begin
        if value !~ {{ iso_date }} then
            return cast({{ infinite }} as {{ type }});
        end if;
        return cast(value as {{ type }});
    exception when others then
        return null;
    end $$;
    {% endfor %}
{%- endmacro %}
