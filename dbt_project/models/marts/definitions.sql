{#- The definitions behind the published figures, one row each, for analysts reading them beside
    the figures. The thresholds and windows come from the project's vars (the pipeline sets the
    windows from its settings), so each row holds the value this build used. No apostrophes in the
    texts: string literals escape them differently per warehouse. -#}
{%- set definitions = [
    {
        'term': 'churn_window_days',
        'value': var('churn_window_days'),
        'unit': 'days',
        'definition': 'A customer has churned at a date when they complete no order in this many days after it: the label crm_churn learns and scores.churn predicts as churn_probability. The satisfaction label looks at the same window.',
    },
    {
        'term': 'churn_risk_band_high_from',
        'value': var('churn_risk_bands')['high'],
        'unit': 'probability',
        'definition': 'customer_360.churn_risk_band is high from this churn probability on.',
    },
    {
        'term': 'churn_risk_band_medium_from',
        'value': var('churn_risk_bands')['medium'],
        'unit': 'probability',
        'definition': 'customer_360.churn_risk_band is medium from this churn probability up to the high threshold, and low below it.',
    },
    {
        'term': 'satisfied',
        'value': none,
        'unit': none,
        'definition': 'A customer is satisfied at a date when their first survey answer in the churn window after it is an NPS promoter or a CSAT of 4 or 5: the label crm_satisfaction learns and scores.satisfaction predicts as satisfied_probability.',
    },
    {
        'term': 'clv_horizon_days',
        'value': var('clv_horizon_days'),
        'unit': 'days',
        'definition': 'scores.clv predicts the orders and the revenue in EUR of each customer in this many days after the scoring date.',
    },
] -%}

with

definitions as (

    {% for item in definitions %}
    select
        cast('{{ item.term }}' as {{ type_text() }}) as term,
        cast({{ 'null' if item.value is none else item.value }} as {{ type_double() }}) as value,
        cast({{ 'null' if item.unit is none else "'" ~ item.unit ~ "'" }} as {{ type_text() }}) as unit,
        cast('{{ item.definition }}' as {{ type_text() }}) as definition
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select * from definitions

)

select * from final
