{#- The keyed hash that stands in for an email, phone or other identifier outside the restricted
    schemas: HMAC-SHA256 (RFC 2104) in hex, from the warehouse's built-in sha256 and the pads of the
    secret key, which every connection holds as session settings (DuckDB: the crm.dbt_pii plugin named
    in profiles.yml; PostgreSQL: the connection options crm.settings.Settings.dbt_env passes). The key
    itself never enters SQL. Equals crm.settings.Settings.hash_pii of the same text; null stays null.
    Without the pads the build fails here rather than publish unkeyed hashes. -#}
{% macro hash_pii(expression) -%}
    {{ return(adapter.dispatch('hash_pii', 'crm')(expression)) }}
{%- endmacro %}

{% macro duckdb__hash_pii(expression) -%}
    case
        when getvariable('pii_hmac_inner') is null or getvariable('pii_hmac_outer') is null
            then error('hash_pii: no PII hash key on this connection (profiles.yml plugin crm.dbt_pii)')
        when ({{ expression }}) is not null
            then sha256(
                getvariable('pii_hmac_outer')
                || unhex(sha256(getvariable('pii_hmac_inner') || encode(cast({{ expression }} as {{ type_text() }}))))
            )
    end
{%- endmacro %}

{#- PostgreSQL's sha256 is built in (11 and later): no extension to install. current_setting fails
    on a connection without the pads. -#}
{% macro postgres__hash_pii(expression) -%}
    case when ({{ expression }}) is not null then encode(sha256(
        decode(current_setting('crm.pii_hmac_outer'), 'hex')
        || sha256(decode(current_setting('crm.pii_hmac_inner'), 'hex')
                  || convert_to(cast({{ expression }} as text), 'UTF8'))
    ), 'hex') end
{%- endmacro %}

{#- Masked forms a person can recognise without learning the value: the first character of an
    email's local part and its domain (a***@example.com), the last two digits of a phone. -#}
{% macro mask_email(expression) -%}
    case when ({{ expression }}) like '%_@_%'
        then left({{ expression }}, 1) || '***' || substr({{ expression }}, {{ dbt.position("'@'", expression) }})
    end
{%- endmacro %}

{% macro mask_phone(expression) -%}
    {%- set digits = regex_remove(expression, '[^0-9]') -%}
    case when length({{ digits }}) >= 2 then '***' || right({{ digits }}, 2) end
{%- endmacro %}

{#- Spark: the pads are session settings, substituted into the SQL text by Spark itself, so dbt's
    compiled files hold only their names. An empty pad (no key on the session) fails the build. -#}
{% macro spark__hash_pii(expression) -%}
    {#- Checked when dbt runs: while it parses, a model's own config() is not applied yet. -#}
    {%- if execute and model is defined and model.config is defined and model.config.materialized == 'view' -%}
        {% do exceptions.raise_compiler_error(
            'hash_pii in the view ' ~ model.name ~ ' on Spark: a view keeps the pads in its definition; '
            ~ 'materialize it as a table on Spark') %}
    {%- endif -%}
    case
        when length('${spark.crm.pii_hmac_inner}') <> 128 or length('${spark.crm.pii_hmac_outer}') <> 128
            then raise_error('hash_pii: no PII hash key on this session (profiles.yml spark.crm.pii_hmac_*)')
        when ({{ expression }}) is not null
            then sha2(concat(
                unhex('${spark.crm.pii_hmac_outer}'),
                unhex(sha2(concat(unhex('${spark.crm.pii_hmac_inner}'), encode(cast({{ expression }} as string), 'UTF-8')), 256))
            ), 256)
    end
{%- endmacro %}
