{#- Nothing lost: for every source, raw rows = rows accepted into staging (before re-deliveries are
    collapsed) + rows quarantined in staging. Returns the sources that do not add up. -#}
with

raw_counts as (

    select 'customers' as source, count(*) as raw_rows from {{ source('crm', 'customers') }}
    union all
    select 'orders', count(*) from {{ source('shop', 'orders') }}

),

accepted_counts as (

    select 'customers' as source, count(*) as accepted_rows
    from {{ ref('base_crm__customers') }} where rejection_reason is null
    union all
    select 'orders', count(*) from {{ ref('base_shop__orders') }} where rejection_reason is null

),

rejected_counts as (

    select source, count(*) as rejected_rows
    from {{ ref('rejected_rows') }}
    where rejected_at = 'staging'
    group by source

),

final as (

    select
        raw_counts.source,
        raw_counts.raw_rows,
        accepted_counts.accepted_rows,
        coalesce(rejected_counts.rejected_rows, 0) as rejected_rows

    from raw_counts
    inner join accepted_counts on accepted_counts.source = raw_counts.source
    left join rejected_counts on rejected_counts.source = raw_counts.source

)

select * from final
where raw_rows <> accepted_rows + rejected_rows
