{#- A table, not a view: at a million customers several marts and this model's tests each read it,
    and a view would type, validate and deduplicate every raw row again for each of them. Incremental
    (macros/incremental_versions.sql): a daily build ranks only the new deliveries and the versions
    kept of their keys. -#}
{{ config(
    materialized='incremental',
    unique_key='session_id',
    incremental_strategy='delete+insert',
    partition_by=partitioned_on_spark(['delivered_on']),
    on_schema_change='append_new_columns'
) }}

with

sessions as (

    {{ versions_to_rank(
        ref('base_web__sessions'),
        key_columns=['session_id'],
        columns=[
            'session_id', 'customer_id', 'started_at', 'duration_seconds', 'pages_viewed', 'device',
            'delivered_on'
        ]
    ) }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by session_id order by delivered_on, loaded_at
        ) as delivery_rank

    from sessions

),

final as (

    select
        session_id,
        customer_id,
        started_at,
        cast(started_at as date) as session_date,
        duration_seconds,
        pages_viewed,
        device,
        delivered_on,
        loaded_at

    from ranked
    where delivery_rank = 1

)

select * from final
