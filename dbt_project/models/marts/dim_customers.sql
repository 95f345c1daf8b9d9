with

customers as (

    select * from {{ ref('stg_crm__customers') }}

),

final as (

    select
        customer_id,
        signup_date,
        cast(extract(year from birth_date) as integer) as birth_year,
        gender,
        city,
        country,
        acquisition_channel,
        has_email_consent,
        updated_at

    from customers

)

select * from final
