{#- The last day for which orders were delivered: labels whose window ends after it are not observed yet. -#}
with

loaded_partitions as (

    select * from {{ source('shop', '_loaded_partitions') }}

),

final as (

    select max(partition_date) as horizon_date
    from loaded_partitions
    where source = 'orders'

)

select * from final
