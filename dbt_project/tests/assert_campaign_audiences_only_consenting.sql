{#- No customer without an email marketing consent, without a valid email, or unsubscribed since the
    CRM record last changed may be in a campaign audience: checked against the dimension and the
    marketing events themselves, not against customer_360's flag that built the audience. -#}
select
    audiences.customer_key,
    customers.has_email_consent,
    customers.email_hash is null as has_no_email

from {{ ref('campaign_audiences') }} as audiences
inner join {{ ref('dim_customers') }} as customers on customers.customer_key = audiences.customer_key
where not coalesce(customers.has_email_consent, false)
    or customers.email_hash is null
    or exists (
        select 1
        from {{ ref('fct_marketing_events') }} as events
        where events.customer_key = audiences.customer_key
            and events.event_type = 'unsubscribe'
            and events.event_at > customers.updated_at
    )
