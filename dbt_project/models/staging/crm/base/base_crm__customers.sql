{#- Every raw customer row, typed, with the reason it is rejected (null when accepted). Values that
    cannot be typed become null rather than failing the build; a record without a usable key or
    signup date, or with a birth date that is not a date, is rejected; an unusable email or phone is
    only blanked and flagged. -#}
{{ config(materialized=suppressing_materialization()) }}

with

source as (

    select * from {{ source('crm', 'customers') }}
    -- Rows of erased customers stay out (macros/erasure.sql); audit.suppressed_rows counts them.
    where not {{ is_suppressed('customers') }}

),

typed as (

    select
        customer_id as raw_customer_id,
        {{ dbt.safe_cast("trim(customer_id)", api.Column.translate_type("bigint")) }} as customer_id,
        trim(first_name) as first_name,
        trim(last_name) as last_name,
        lower(trim(email)) as email_normalised,
        {{ regex_remove('trim(phone)', '[^0-9+]') }} as phone_normalised,
        nullif(trim(birth_date), '') as raw_birth_date,
        {{ dbt.safe_cast("nullif(trim(birth_date), '')", api.Column.translate_type("date")) }} as birth_date,
        lower(trim(gender)) as gender,
        trim(city) as city,
        trim(region) as region,
        upper(trim(country)) as country,
        {{ dbt.safe_cast("signup_date", api.Column.translate_type("date")) }} as signup_date,
        lower(trim(acquisition_channel)) as acquisition_channel,
        lower(trim(email_consent)) in ('true', '1', 'yes') as has_email_consent,
        {{ dbt.safe_cast("updated_at", api.Column.translate_type("timestamp")) }} as updated_at,
        _partition_date as delivered_on,
        _loaded_at as loaded_at,
        -- the delivered file, so that the quarantine names it
        _source_file as source_file

    from source

),

final as (

    select
        *,
        {{ regex_full_match('email_normalised', var('contact_rules')['valid_email']) }} as is_email_valid,
        {{ regex_full_match('phone_normalised', var('contact_rules')['valid_phone']) }} as is_phone_valid,
        case
            when customer_id is null then 'missing or invalid customer_id'
            when signup_date is null then 'missing or invalid signup_date'
            when updated_at is null then 'missing or invalid updated_at'
            -- Nobody signs up after the day their record was delivered (one day of clock skew allowed).
            when signup_date > {{ dbt.dateadd('day', 1, 'delivered_on') }} then 'signup_date after the delivery day'
            when signup_date < cast('{{ var("earliest_plausible_date") }}' as date) then 'signup_date implausibly early'
            -- Optional, but a date that cannot be read is a delivery error, not a missing value.
            when raw_birth_date is not null and birth_date is null then 'invalid birth_date'
        end as rejection_reason

    from typed

)

select * from final
