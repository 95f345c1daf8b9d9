{#- Every raw campaign variant row, typed, with the reason it is rejected (null when accepted). -#}
with

source as (

    select * from {{ source('marketing', 'campaigns') }}

),

typed as (

    select
        coalesce(trim(campaign_id), '') || '-' || coalesce(trim(variant), '') as raw_campaign_variant_key,
        {{ dbt.safe_cast("trim(campaign_id)", api.Column.translate_type("bigint")) }} as campaign_id,
        case
            when lower(trim(variant)) = 'control' then 'control'
            else upper(trim(variant))
        end as variant,
        trim(campaign_name) as campaign_name,
        lower(trim(channel)) as channel,
        {{ dbt.safe_cast("trim(sent_on)", api.Column.translate_type("date")) }} as sent_on,
        nullif(trim(subject), '') as subject,
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
            when campaign_id is null then 'missing or invalid campaign_id'
            when variant not in ('A', 'B', 'control') or variant is null then 'unknown variant'
            when sent_on is null then 'missing or invalid sent_on'
        end as rejection_reason

    from typed

)

select * from final
