{#- No customer without an email marketing consent, without a valid email, or unsubscribed since the
    CRM record last changed may be in a campaign audience: checked against the dimension and the
    marketing events themselves, not against customer_360's flag that built the audience. The last
    unsubscribe per customer is joined rather than looked up per audience row (an `or exists`
    subquery that PostgreSQL runs once per row: over six minutes at 100,000 customers). -#}
with

audiences as (

    select * from {{ ref('campaign_audiences') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

last_unsubscribes as (

    select customer_key, max(event_at) as last_unsubscribed_at
    from {{ ref('fct_marketing_events') }}
    where event_type = 'unsubscribe'
    group by customer_key

),

final as (

    select
        audiences.customer_key,
        customers.has_email_consent,
        customers.email_hash is null as has_no_email

    from audiences
    inner join customers on customers.customer_key = audiences.customer_key
    left join last_unsubscribes on last_unsubscribes.customer_key = audiences.customer_key
    where not coalesce(customers.has_email_consent, false)
        or customers.email_hash is null
        or last_unsubscribes.last_unsubscribed_at > customers.updated_at

)

select * from final
