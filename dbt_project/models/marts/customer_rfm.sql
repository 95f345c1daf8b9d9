{#- RFM at the latest as-of date: recency, frequency and monetary quintile scores (5 = best) over
    customers with at least one completed order, and a named segment from the classic RFM grid. -#}
with

features as (

    select * from {{ ref('customer_features') }}

),

latest as (

    select * from features
    where as_of_date = (select max(as_of_date) from features)

),

buyers as (

    select
        customer_key,
        as_of_date,
        recency_days,
        frequency,
        monetary,
        ntile(5) over (order by recency_days desc, customer_key) as recency_score,
        ntile(5) over (order by frequency, customer_key) as frequency_score,
        ntile(5) over (order by monetary, customer_key) as monetary_score

    from latest
    where frequency > 0

),

final as (

    select
        customer_key,
        as_of_date,
        recency_days,
        frequency,
        monetary,
        cast(recency_score as integer) as recency_score,
        cast(frequency_score as integer) as frequency_score,
        cast(monetary_score as integer) as monetary_score,
        cast(recency_score as {{ type_text() }}) || cast(frequency_score as {{ type_text() }}) || cast(monetary_score as {{ type_text() }})
            as rfm_code,
        case
            when recency_score >= 4 and frequency_score >= 4 and monetary_score >= 4 then 'Champions'
            when recency_score >= 3 and frequency_score >= 3 then 'Loyal'
            when recency_score >= 4 and frequency_score <= 2 then 'New or promising'
            when recency_score <= 2 and frequency_score >= 4 then 'At risk'
            when recency_score <= 2 and frequency_score >= 2 then 'Hibernating'
            when recency_score <= 1 then 'Lost'
            else 'Needs attention'
        end as rfm_segment

    from buyers

)

select * from final
