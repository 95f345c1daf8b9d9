{#- Every raw survey response row, typed, with the reason it is rejected (null when accepted). -#}
{{ config(materialized=suppressing_materialization()) }}

with

source as (

    select * from {{ source('surveys', 'surveys') }}
    -- Rows of erased customers stay out (macros/erasure.sql); audit.suppressed_rows counts them.
    where not {{ is_suppressed('surveys') }}

),

typed as (

    select
        response_id as raw_response_id,
        {{ dbt.safe_cast("trim(response_id)", api.Column.translate_type("bigint")) }} as response_id,
        {{ dbt.safe_cast("trim(customer_id)", api.Column.translate_type("bigint")) }} as customer_id,
        {{ dbt.safe_cast("trim(responded_at)", api.Column.translate_type("timestamp")) }} as responded_at,
        {{ dbt.safe_cast("trim(nps)", api.Column.translate_type("integer")) }} as nps,
        {{ dbt.safe_cast("trim(csat)", api.Column.translate_type("integer")) }} as csat,
        nullif(trim(comment), '') as comment,
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
            when response_id is null then 'missing or invalid response_id'
            when customer_id is null then 'missing or invalid customer_id'
            when responded_at is null then 'missing or invalid responded_at'
            when nps is null then 'missing or invalid nps'
            when nps < 0 or nps > 10 then 'nps outside 0-10'
            when csat is null then 'missing or invalid csat'
            when csat < 1 or csat > 5 then 'csat outside 1-5'
            -- An answer cannot be given after the day it was delivered (one day of clock skew allowed).
            when responded_at > {{ dbt.dateadd('day', 2, 'delivered_on') }} then 'responded_at in the future'
        end as rejection_reason

    from typed

)

select * from final
