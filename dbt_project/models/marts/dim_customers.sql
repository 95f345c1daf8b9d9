{#- The customer for BI: no name, birth date, email or phone. The email and phone appear only as
    keyed hashes (to match a customer in another system holding the same key) and masked forms. -#}
with

customers as (

    select * from {{ ref('int_customers_resolved') }}

),

final as (

    select
        customer_key,
        {{ hash_pii('email') }} as email_hash,
        {{ hash_pii('phone') }} as phone_hash,
        {{ mask_email('email') }} as email_masked,
        {{ mask_phone('phone') }} as phone_masked,
        signup_date,
        cast(extract(year from birth_date) as integer) as birth_year,
        gender,
        city,
        region,
        country,
        acquisition_channel,
        has_email_consent,
        cast(source_records as integer) as source_records,
        first_delivered_on,
        updated_at

    from customers

)

select * from final
