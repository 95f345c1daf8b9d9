with

source as (

    select * from {{ source('crm', 'customers') }}

),

typed as (

    select
        cast(customer_id as bigint) as customer_id,
        trim(first_name) as first_name,
        trim(last_name) as last_name,
        lower(trim(email)) as email,
        trim(phone) as phone,
        cast(birth_date as date) as birth_date,
        lower(trim(gender)) as gender,
        trim(city) as city,
        upper(trim(country)) as country,
        cast(signup_date as date) as signup_date,
        lower(trim(acquisition_channel)) as acquisition_channel,
        lower(trim(email_consent)) in ('true', '1', 'yes') as has_email_consent,
        cast(updated_at as timestamp) as updated_at,
        _partition_date as delivered_on

    from source

),

ranked as (

    select
        *,
        row_number() over (
            partition by customer_id order by updated_at desc, delivered_on desc
        ) as delivery_rank

    from typed

),

final as (

    select
        customer_id, first_name, last_name, email, phone, birth_date, gender, city, country,
        signup_date, acquisition_channel, has_email_consent, updated_at, delivered_on

    from ranked
    where delivery_rank = 1

)

select * from final
