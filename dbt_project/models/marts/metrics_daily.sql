{#- The platform's headline metrics, defined once, one row per day with completed orders: the
    dashboard and docs/bi.md read them here. Active customers and churn follow the churn label's
    window (var churn_window_days, w): a customer is active on day D with a completed order in the w
    days up to D, and has churned at D with none in the w days after it (customer_churn_labels).
    Each customer's completed orders form runs of activity, a new run where an order comes w days or
    more after the previous one. A run keeps the customer active from its first order until w days
    after its last; the customer churns from its last order until then, or until w days before the
    next run starts if that is earlier. The counts on each day are running sums over the days those
    spans start and end, so the model reads every order once. -#}
{%- set window_days = var('churn_window_days') -%}

with

orders as (

    select * from {{ ref('fct_orders') }}
    where status = 'completed'

),

horizon as (

    select * from {{ ref('int_data_horizon') }}

),

order_days as (

    select
        customer_key,
        order_date,
        lag(order_date) over (partition by customer_key order by order_date) as previous_order_date

    from (select distinct customer_key, order_date from orders) as distinct_order_days

),

run_starts as (

    select
        customer_key,
        order_date,
        case
            when previous_order_date is null then 1
            when order_date >= {{ dbt.dateadd('day', window_days, 'previous_order_date') }} then 1
            else 0
        end as starts_run

    from order_days

),

numbered_runs as (

    select
        customer_key,
        order_date,
        sum(starts_run) over (
            partition by customer_key order by order_date rows between unbounded preceding and current row
        ) as run_number

    from run_starts

),

runs as (

    select
        customer_key,
        run_number,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date

    from numbered_runs
    group by customer_key, run_number

),

run_spans as (

    select
        first_order_date as active_from,
        {{ dbt.dateadd('day', window_days, 'last_order_date') }} as active_until,
        last_order_date as churned_from,
        -- An order within w days after D means no churn at D: the next run's first order ends the
        -- churn w days before it, if that comes before the run's activity ends.
        least(
            coalesce(
                {{ dbt.dateadd('day', -window_days, 'lead(first_order_date) over (partition by customer_key order by run_number)') }},
                {{ dbt.dateadd('day', window_days, 'last_order_date') }}
            ),
            {{ dbt.dateadd('day', window_days, 'last_order_date') }}
        ) as churned_until

    from runs

),

span_changes as (

    select active_from as metric_date, 1 as active_change, 0 as churned_change from run_spans
    union all
    select active_until, -1, 0 from run_spans
    union all
    select churned_from, 0, 1 from run_spans where churned_from < churned_until
    union all
    select churned_until, 0, -1 from run_spans where churned_from < churned_until

),

daily_changes as (

    select metric_date, sum(active_change) as active_change, sum(churned_change) as churned_change
    from span_changes
    group by metric_date

),

daily_orders as (

    select
        order_date as metric_date,
        count(*) as completed_orders,
        sum(amount_eur) as revenue_eur,
        count(distinct customer_key) as ordering_customers

    from orders
    group by order_date

),

days as (

    select metric_date from daily_orders
    union
    select metric_date from daily_changes

),

running as (

    select
        days.metric_date,
        sum(coalesce(daily_changes.active_change, 0)) over (
            order by days.metric_date rows between unbounded preceding and current row
        ) as active_customers,
        sum(coalesce(daily_changes.churned_change, 0)) over (
            order by days.metric_date rows between unbounded preceding and current row
        ) as churning_customers

    from days
    left join daily_changes on daily_changes.metric_date = days.metric_date

),

final as (

    select
        daily_orders.metric_date,
        cast(daily_orders.completed_orders as bigint) as completed_orders,
        cast(daily_orders.ordering_customers as bigint) as ordering_customers,
        cast(daily_orders.revenue_eur as {{ type_double() }}) as revenue_eur,
        cast(running.active_customers as bigint) as active_customers,
        case
            when {{ dbt.dateadd('day', window_days, 'daily_orders.metric_date') }} <= horizon.horizon_date
                then cast(running.churning_customers as {{ type_double() }}) / running.active_customers
        end as churn_rate,
        cast({{ window_days }} as integer) as churn_window_days

    from daily_orders
    inner join running on running.metric_date = daily_orders.metric_date
    cross join horizon

)

select * from final
