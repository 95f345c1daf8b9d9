{#- The as-of dates features and labels are computed at, from CRM_DBT_AS_OF_DATES (comma-separated)
    that the pipeline sets: the scoring date in the warehouse build, the training and validation
    dates in the training-data build (`tag:point_in_time` and `tag:training`,
    crm.pipeline.build_training_data). An environment variable, not a var: crm.dbt says why. -#}
{{ config(tags=['point_in_time']) }}
{%- set as_of_dates = env_var('CRM_DBT_AS_OF_DATES', '').split(',') | reject('equalto', '') | list -%}

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
