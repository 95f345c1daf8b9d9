{#- Satisfaction label per customer and as-of date D: the first survey answer in the window after D
    is a promoter NPS (9-10) or a CSAT of 4 or 5. Customers who did not answer in the window have no
    label; a label is observed only once the whole window lies within delivered data. Never built by
    the daily build: the training-data build computes the training and validation dates, the
    monitoring step the scoring dates whose window has closed (as customer_churn_labels). -#}
{{ config(tags=['training', 'monitoring']) }}
{%- set window_days = var('churn_window_days') -%}

with

customer_dates as (

    select customer_key, as_of_date from {{ ref('customer_features') }}
    where as_of_date in (select as_of_date from {{ ref('int_as_of_dates') }})

),

responses as (

    select * from {{ ref('fct_survey_responses') }}

),

horizon as (

    select * from {{ ref('int_data_horizon') }}

),

answers_in_window as (

    select
        customer_dates.customer_key,
        customer_dates.as_of_date,
        responses.is_satisfied,
        row_number() over (
            partition by customer_dates.customer_key, customer_dates.as_of_date
            order by responses.responded_at, responses.response_id
        ) as answer_rank

    from customer_dates
    inner join responses
        on responses.customer_key = customer_dates.customer_key
        and responses.responded_at >= {{ dbt.dateadd('day', 1, 'customer_dates.as_of_date') }}
        and responses.responded_at < {{ dbt.dateadd('day', window_days + 1, 'customer_dates.as_of_date') }}

),

final as (

    select
        answers_in_window.customer_key,
        answers_in_window.as_of_date,
        cast({{ window_days }} as integer) as label_window_days,
        answers_in_window.is_satisfied,
        {{ dbt.dateadd('day', window_days, 'answers_in_window.as_of_date') }} <= horizon.horizon_date
            as is_label_observed

    from answers_in_window
    cross join horizon
    where answers_in_window.answer_rank = 1

)

select * from final
