{#- The customer's own words known at each as-of date D: support-ticket descriptions and survey
    comments delivered by D, oldest first, with contact details masked. Feeds the satisfaction
    model's text features; not published to BI.
    Incremental: a build computes the as-of dates it was given (the dates customer_features computes
    or recomputes) and keeps the other dates' rows, which masking every text again at every stored
    date would otherwise cost each day. -#}
{{ config(unique_key=['customer_key', 'as_of_date'], tags=['point_in_time']) }}
-- depends_on: {{ ref('int_as_of_dates') }}

with

customer_dates as (

    select customer_key, as_of_date from {{ ref('customer_features') }}
    {% if is_incremental() %}
    where as_of_date in (select as_of_date from {{ ref('int_as_of_dates') }})
    {% endif %}

),

tickets as (

    select * from {{ ref('stg_service__tickets') }}

),

responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

identity as (

    select * from {{ ref('int_customer_identity') }}

),

texts as (

    -- Masked once per text, not once per text and as-of date. Texts written at the same moment keep
    -- the order of their source and id, so the concatenation is the same on every engine and run.
    select identity.customer_key, tickets.created_at as written_at, 1 as source_order, tickets.ticket_id as text_id,
        tickets.delivered_on,
        {{ mask_contact_details('tickets.description') }} as text
    from tickets
    inner join identity on identity.customer_id = tickets.customer_id
    where tickets.description is not null and trim(tickets.description) <> ''

    union all

    select identity.customer_key, responses.responded_at as written_at, 2 as source_order,
        responses.response_id as text_id, responses.delivered_on,
        {{ mask_contact_details('responses.comment') }} as text
    from responses
    inner join identity on identity.customer_id = responses.customer_id
    where responses.comment is not null and trim(responses.comment) <> ''

),

known_at_date as (

    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        {{ ordered_string_agg('texts.text', "' '", 'texts.written_at, texts.source_order, texts.text_id') }} as feedback_text,
        count(texts.text) as texts_written

    from customer_dates
    inner join texts
        on texts.customer_key = customer_dates.customer_key
        and texts.written_at < {{ dbt.dateadd('day', 1, 'customer_dates.as_of_date') }}
        and texts.delivered_on <= customer_dates.as_of_date
    group by customer_dates.customer_key, customer_dates.as_of_date

),

final as (

    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        coalesce(known_at_date.feedback_text, '') as feedback_text,
        coalesce(known_at_date.texts_written, 0) as texts_written

    from customer_dates
    left join known_at_date
        on known_at_date.customer_key = customer_dates.customer_key
        and known_at_date.as_of_date = customer_dates.as_of_date

)

select * from final
