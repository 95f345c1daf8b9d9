with

campaigns as (

    select * from {{ ref('base_marketing__campaigns') }}
    where rejection_reason is null

),

ranked as (

    select
        *,
        row_number() over (
            partition by campaign_id, variant order by delivered_on desc, loaded_at desc
        ) as delivery_rank

    from campaigns

),

final as (

    select
        campaign_id,
        variant,
        campaign_name,
        channel,
        sent_on,
        subject,
        delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
