{#- The quarantine in figures for BI: how many rows of each source and delivery day were rejected,
    where and why. Counts only: the rejected rows themselves (keys, files, customer ids) stay in
    audit.rejected_rows, which is not published. -#}

with

rejected_rows as (

    select * from {{ ref('rejected_rows') }}

),

final as (

    select
        partition_date,
        source,
        rejected_at,
        reason,
        cast(count(*) as bigint) as rejected_rows

    from rejected_rows
    group by partition_date, source, rejected_at, reason

)

select * from final
