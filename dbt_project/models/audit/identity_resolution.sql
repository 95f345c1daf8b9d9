{#- The consolidation figure of this build: how many CRM records identity resolution merged. -#}
with

identity as (

    select * from {{ ref('int_customer_identity') }}

),

final as (

    select
        count(*) as customer_records,
        count(distinct customer_key) as resolved_customers,
        count(*) - count(distinct customer_key) as merged_records,
        cast(count(*) - count(distinct customer_key) as {{ type_double() }}) / nullif(count(*), 0) as consolidation_rate,
        cast(sum(case when match_rule = 'shared email' then 1 else 0 end) as bigint) as merged_by_email,
        cast(sum(case when match_rule = 'shared phone' then 1 else 0 end) as bigint) as merged_by_phone

    from identity

)

select * from final
