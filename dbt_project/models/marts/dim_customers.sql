with

customers as (

    select * from {{ ref('int_customers_resolved') }}

),

final as (

    select
        customer_key,
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
