{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. Incremental
    (macros/incremental_versions.sql): a daily build ranks only the new deliveries and the versions
    kept of their keys. -#}
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['delivered_on']),
    on_schema_change='append_new_columns'
) }}

with

events as (

    {{ versions_to_rank(
        ref('base_marketing__events'),
        key_columns=['event_id'],
        columns=[
            'event_id', 'campaign_id', 'variant', 'customer_id', 'event_type', 'event_at', 'revenue',
            'delivered_on'
        ]
    ) }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by event_id order by delivered_on, loaded_at
        ) as delivery_rank

    from events

),

final as (

    select
        event_id,
        campaign_id,
        variant,
        customer_id,
        event_type,
        event_at,
        revenue,
        delivered_on,
        loaded_at

    from ranked
    where delivery_rank = 1

)

select * from final
