{#- Campaign lift against the randomised hold-out group. Per campaign and treated variant (A, B):
    recipients are the distinct customers sent that variant, the control group the distinct
    customers held out; a recipient converts with at least one completed order in the 7 days after
    the campaign's send day. Conversions are measured from the orders themselves, the same way for
    treated and control customers, so the lift is comparable (the email tool's own `conversion`
    events only exist for clicks, never for the control group). The confidence interval of the
    absolute lift is the normal approximation for a difference of two proportions. Revenue is in
    EUR: the orders' `amount_eur` from fct_orders (converted there with the seed currency_rates),
    so orders in different currencies add up. -#}
{%- set effect_days = 7 -%}

with

campaigns as (

    select * from {{ ref('stg_marketing__campaigns') }}

),

events as (

    select * from {{ ref('fct_marketing_events') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

campaign_days as (

    -- One send day and name per campaign, so treated and control share the same window.
    select
        campaign_id,
        min(sent_on) as sent_on,
        max(campaign_name) as campaign_name

    from campaigns
    group by campaign_id

),

recipients as (

    select distinct
        campaign_id,
        variant,
        customer_key

    from events
    where (variant in ('A', 'B') and event_type = 'send')
        or (variant = 'control' and event_type = 'holdout')

),

completed_orders as (

    -- fct_orders holds the latest version of each order of a known customer, keyed to the person.
    select
        customer_key,
        order_date,
        amount_eur

    from orders
    where status = 'completed'

),

campaign_window_days as (

    -- The days of each campaign's window: orders join on their day (an equality, not a range).
    {% for day_offset in range(1, effect_days + 1) %}
    select campaign_id, {{ dbt.dateadd('day', day_offset, 'sent_on') }} as window_day
    from campaign_days
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

window_orders as (

    select
        campaign_window_days.campaign_id,
        completed_orders.customer_key,
        count(*) as orders_in_window,
        sum(completed_orders.amount_eur) as revenue_eur_in_window

    from completed_orders
    inner join campaign_window_days
        on cast(campaign_window_days.window_day as date) = completed_orders.order_date
    group by campaign_window_days.campaign_id, completed_orders.customer_key

),

recipient_outcomes as (

    select
        recipients.campaign_id,
        recipients.variant,
        recipients.customer_key,
        coalesce(window_orders.orders_in_window, 0) as orders_in_window,
        coalesce(window_orders.revenue_eur_in_window, 0) as revenue_eur_in_window

    from recipients
    inner join campaign_days on campaign_days.campaign_id = recipients.campaign_id
    left join window_orders
        on window_orders.campaign_id = recipients.campaign_id
        and window_orders.customer_key = recipients.customer_key

),

group_outcomes as (

    select
        campaign_id,
        variant,
        count(*) as recipients,
        sum(case when orders_in_window > 0 then 1 else 0 end) as conversions,
        sum(revenue_eur_in_window) as revenue_eur

    from recipient_outcomes
    group by campaign_id, variant

),

treated_variants as (

    select distinct campaign_id, variant
    from campaigns
    where variant in ('A', 'B')

),

rates as (

    select
        treated_variants.campaign_id,
        campaign_days.campaign_name,
        treated_variants.variant,
        campaign_days.sent_on,
        cast(coalesce(treated.recipients, 0) as integer) as recipients,
        cast(coalesce(treated.conversions, 0) as integer) as conversions,
        cast(treated.conversions as {{ type_double() }}) / nullif(treated.recipients, 0) as conversion_rate,
        cast(treated.revenue_eur as {{ type_double() }}) / nullif(treated.recipients, 0) as revenue_per_recipient_eur,
        cast(coalesce(control.recipients, 0) as integer) as control_recipients,
        cast(coalesce(control.conversions, 0) as integer) as control_conversions,
        cast(control.conversions as {{ type_double() }}) / nullif(control.recipients, 0) as control_conversion_rate,
        cast(control.revenue_eur as {{ type_double() }}) / nullif(control.recipients, 0) as control_revenue_per_recipient_eur

    from treated_variants
    inner join campaign_days on campaign_days.campaign_id = treated_variants.campaign_id
    left join group_outcomes as treated
        on treated.campaign_id = treated_variants.campaign_id
        and treated.variant = treated_variants.variant
    left join group_outcomes as control
        on control.campaign_id = treated_variants.campaign_id
        and control.variant = 'control'

),

lifts as (

    select
        *,
        conversion_rate - control_conversion_rate as absolute_lift,
        (conversion_rate - control_conversion_rate) / nullif(control_conversion_rate, 0) as relative_lift,
        1.96 * sqrt(
            conversion_rate * (1 - conversion_rate) / nullif(recipients, 0)
            + control_conversion_rate * (1 - control_conversion_rate) / nullif(control_recipients, 0)
        ) as lift_margin

    from rates

),

final as (

    select
        campaign_id,
        campaign_name,
        variant,
        sent_on,
        recipients,
        conversions,
        conversion_rate,
        control_recipients,
        control_conversions,
        control_conversion_rate,
        absolute_lift,
        relative_lift,
        absolute_lift - lift_margin as absolute_lift_ci_lower,
        absolute_lift + lift_margin as absolute_lift_ci_upper,
        absolute_lift - lift_margin > 0 or absolute_lift + lift_margin < 0 as is_lift_significant,
        revenue_per_recipient_eur,
        control_revenue_per_recipient_eur

    from lifts

)

select * from final
