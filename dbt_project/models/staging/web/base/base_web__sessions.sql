{#- Every raw web or app session row, typed, with the reason it is rejected (null when accepted). -#}
{{ config(materialized=suppressing_materialization()) }}

with

source as (

    select * from {{ source('web', 'web_sessions') }}
    -- Rows of erased customers stay out (macros/erasure.sql); audit.suppressed_rows counts them.
    where not {{ is_suppressed('web_sessions') }}

),

typed as (

    select
        cast(session_id as {{ type_text() }}) as raw_session_id,
        {{ dbt.safe_cast("session_id", api.Column.translate_type("bigint")) }} as session_id,
        {{ dbt.safe_cast("customer_id", api.Column.translate_type("bigint")) }} as customer_id,
        {{ dbt.safe_cast("started_at", api.Column.translate_type("timestamp")) }} as started_at,
        {{ dbt.safe_cast("duration_seconds", api.Column.translate_type("integer")) }} as duration_seconds,
        {{ dbt.safe_cast("pages_viewed", api.Column.translate_type("integer")) }} as pages_viewed,
        lower(trim(device)) as device,
        _partition_date as delivered_on,
        _loaded_at as loaded_at,
        -- the delivered file, so that the quarantine names it
        _source_file as source_file

    from source

),

final as (

    select
        *,
        case
            when session_id is null then 'missing or invalid session_id'
            when customer_id is null then 'missing or invalid customer_id'
            when started_at is null then 'missing or invalid started_at'
            when duration_seconds is null or duration_seconds < 0 then 'missing or negative duration_seconds'
            when pages_viewed is null or pages_viewed < 0 then 'missing or negative pages_viewed'
            -- A session cannot start after the day it was delivered (one day of clock skew allowed).
            when started_at > {{ dbt.dateadd('day', 2, 'delivered_on') }} then 'started_at in the future'
        end as rejection_reason

    from typed

)

select * from final
