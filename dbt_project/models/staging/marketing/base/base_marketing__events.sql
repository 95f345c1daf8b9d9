{#- Every raw marketing event row, typed, with the reason it is rejected (null when accepted). The
    control group only ever gets `holdout` events, the treated variants never do. -#}
{{ config(materialized=suppressing_materialization()) }}

with

source as (

    select * from {{ source('marketing', 'marketing_events') }}
    -- Rows of erased customers stay out (macros/erasure.sql); audit.suppressed_rows counts them.
    where not {{ is_suppressed('marketing_events') }}

),

typed as (

    select
        event_id as raw_event_id,
        {{ dbt.safe_cast("trim(event_id)", api.Column.translate_type("bigint")) }} as event_id,
        {{ dbt.safe_cast("trim(campaign_id)", api.Column.translate_type("bigint")) }} as campaign_id,
        case
            when lower(trim(variant)) = 'control' then 'control'
            else upper(trim(variant))
        end as variant,
        {{ dbt.safe_cast("trim(customer_id)", api.Column.translate_type("bigint")) }} as customer_id,
        lower(trim(event_type)) as event_type,
        {{ dbt.safe_cast("trim(event_at)", api.Column.translate_type("timestamp")) }} as event_at,
        nullif(trim(revenue), '') as raw_revenue,
        {{ dbt.safe_cast("nullif(trim(revenue), '')", type_double()) }} as revenue,
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
            when event_id is null then 'missing or invalid event_id'
            when campaign_id is null then 'missing or invalid campaign_id'
            when customer_id is null then 'missing or invalid customer_id'
            when variant not in ('A', 'B', 'control') or variant is null then 'unknown variant'
            when event_type not in ('holdout', 'send', 'open', 'click', 'unsubscribe', 'conversion')
                or event_type is null then 'unknown event_type'
            when (event_type = 'holdout') <> (variant = 'control') then 'event_type does not match variant'
            when event_at is null then 'missing or invalid event_at'
            when raw_revenue is not null and revenue is null then 'invalid revenue'
            when revenue is not null and not {{ is_finite_number('revenue') }} then 'revenue not a finite number'
            when revenue < 0 then 'negative revenue'
            -- An event cannot happen after the day it was delivered (one day of clock skew allowed).
            when event_at > {{ dbt.dateadd('day', 2, 'delivered_on') }} then 'event_at in the future'
        end as rejection_reason

    from typed

)

select * from final
