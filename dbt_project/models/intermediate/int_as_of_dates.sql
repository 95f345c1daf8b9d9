{#- The as-of dates features and labels are computed at, from the `as_of_dates` var the pipeline
    passes: the scoring date in the warehouse build, the training and validation dates in the
    training-data build (`tag:point_in_time` and `tag:training`, crm.pipeline.build_training_data). -#}
{{ config(tags=['point_in_time']) }}
{%- set as_of_dates = var('as_of_dates') -%}

with

as_of_dates as (

    {%- for as_of_date in as_of_dates %}
    select cast('{{ as_of_date }}' as date) as as_of_date
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    select cast(null as date) as as_of_date where 1 = 0
    {%- endfor %}

),

final as (

    select distinct as_of_date from as_of_dates

)

select * from final
