{#- Which optional sources had delivered anything by each as-of date: features of a source that was
    not delivered are null, not zero. -#}
{{ config(tags=['point_in_time']) }}
with

loaded_partitions as (

    select * from {{ source('shop', '_loaded_partitions') }}

),

as_of_dates as (

    select * from {{ ref('int_as_of_dates') }}

),

final as (

    select
        as_of_dates.as_of_date,
        max(case when loaded_partitions.source = 'tickets' then 1 else 0 end) = 1 as has_tickets,
        max(case when loaded_partitions.source = 'surveys' then 1 else 0 end) = 1 as has_surveys,
        max(case when loaded_partitions.source = 'marketing_events' then 1 else 0 end) = 1 as has_marketing_events,
        max(case when loaded_partitions.source = 'web_sessions' then 1 else 0 end) = 1 as has_web_sessions

    from as_of_dates
    left join loaded_partitions
        on loaded_partitions.partition_date <= as_of_dates.as_of_date
    group by as_of_dates.as_of_date

)

select * from final
