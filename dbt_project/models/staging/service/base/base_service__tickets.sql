{#- Every raw ticket row, typed, with the reason it is rejected (null when accepted). A ticket is
    delivered again when it is resolved or rated; each delivery is one row here. -#}
{{ config(materialized=suppressing_materialization()) }}

with

source as (

    select * from {{ source('service', 'tickets') }}
    -- Rows of erased customers stay out (macros/erasure.sql); audit.suppressed_rows counts them.
    where not {{ is_suppressed('tickets') }}

),

typed as (

    select
        ticket_id as raw_ticket_id,
        {{ dbt.safe_cast("trim(ticket_id)", api.Column.translate_type("bigint")) }} as ticket_id,
        {{ dbt.safe_cast("trim(customer_id)", api.Column.translate_type("bigint")) }} as customer_id,
        {{ dbt.safe_cast("trim(created_at)", api.Column.translate_type("timestamp")) }} as created_at,
        nullif(trim(resolved_at), '') as raw_resolved_at,
        {{ dbt.safe_cast("nullif(trim(resolved_at), '')", api.Column.translate_type("timestamp")) }} as resolved_at,
        lower(trim(channel)) as channel,
        lower(trim(category)) as category,
        lower(trim(priority)) as priority,
        trim(description) as description,
        nullif(trim(csat), '') as raw_csat,
        {{ dbt.safe_cast("nullif(trim(csat), '')", api.Column.translate_type("integer")) }} as csat,
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
            when ticket_id is null then 'missing or invalid ticket_id'
            when customer_id is null then 'missing or invalid customer_id'
            when created_at is null then 'missing or invalid created_at'
            when raw_resolved_at is not null and resolved_at is null then 'invalid resolved_at'
            when raw_csat is not null and csat is null then 'invalid csat'
            when csat < 1 or csat > 5 then 'csat outside 1-5'
            when resolved_at < created_at then 'resolved_at before created_at'
            -- A ticket cannot be opened after the day it was delivered (one day of clock skew allowed).
            when created_at > {{ dbt.dateadd('day', 2, 'delivered_on') }} then 'created_at in the future'
        end as rejection_reason

    from typed

)

select * from final
