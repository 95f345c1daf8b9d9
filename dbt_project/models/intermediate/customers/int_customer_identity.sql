{#- Identity resolution: customer records that share a valid normalised email or phone belong to one
    person. Rule: the customer key of a record is the smallest customer_id reachable through shared
    emails and phones, found by propagating the minimum three times (email, phone, email), which
    resolves chains of up to three links; longer chains keep more than one key. A table (ids only, no
    contact details): almost every mart joins it and its window passes ran again for each. -#}
{{ config(materialized='table') }}

with

customers as (

    select customer_id, email, phone from {{ ref('stg_crm__customers') }}

),

by_email as (

    select
        customer_id,
        email,
        phone,
        case
            when email is null then customer_id
            else min(customer_id) over (partition by email)
        end as key_after_email

    from customers

),

by_phone as (

    select
        *,
        case
            when phone is null then key_after_email
            else min(key_after_email) over (partition by phone)
        end as key_after_phone

    from by_email

),

by_email_again as (

    select
        *,
        case
            when email is null then key_after_phone
            else min(key_after_phone) over (partition by email)
        end as customer_key

    from by_phone

),

final as (

    select
        customer_id,
        customer_key,
        case
            when customer_key = customer_id then 'own record'
            when key_after_email < customer_id then 'shared email'
            else 'shared phone'
        end as match_rule

    from by_email_again

)

select * from final
