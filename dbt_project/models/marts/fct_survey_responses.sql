{#- One row per survey response of a known customer. NPS categories follow the standard bands:
    promoter 9-10, passive 7-8, detractor 0-6. The comment's text stays in staging: free text can
    name a person or give contact details, and masking cannot find every name, so BI sees only
    whether there is a comment (the models read it masked, in marts/ml). -#}
with

responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

final as (

    select
        responses.response_id,
        identity.customer_key,
        responses.responded_at,
        responses.nps,
        responses.csat,
        case
            when responses.nps >= 9 then 'promoter'
            when responses.nps >= 7 then 'passive'
            else 'detractor'
        end as nps_category,
        coalesce(responses.nps >= 9 or responses.csat >= 4, false) as is_satisfied,
        responses.comment is not null as has_comment

    from responses
    inner join identity on identity.customer_id = responses.customer_id

)

select * from final
