-- One row per acquisition cohort (month of a customer's first paid order) and
-- month since acquisition, with how many of the cohort ordered that month.

with

customers as (

    select * from {{ ref('int_orders_aggregated_to_customers') }}

),

orders as (

    select * from {{ ref('int_orders_joined') }}

),

customer_cohorts as (

    select
        customer_id,
        cast({{ dbt.date_trunc('month', 'first_order_at') }} as date) as cohort_month

    from customers
    where first_order_at is not null

),

cohort_sizes as (

    select
        cohort_month,
        count(*) as cohort_size

    from customer_cohorts
    group by cohort_month

),

customer_active_months as (

    select distinct
        orders.customer_id,
        customer_cohorts.cohort_month,
        cast({{ dbt.date_trunc('month', 'orders.ordered_at') }} as date) as order_month

    from orders

    inner join customer_cohorts
        on orders.customer_id = customer_cohorts.customer_id

    where orders.counts_as_revenue

),

customer_month_offsets as (

    select
        customer_id,
        cohort_month,
        {{ dbt.datediff('cohort_month', 'order_month', 'month') }} as months_since_first_order  -- noqa: LT05

    from customer_active_months

),

cohort_activity as (

    select
        cohort_month,
        months_since_first_order,
        count(*) as active_customers

    from customer_month_offsets
    group by cohort_month, months_since_first_order

),

final as (

    select
        cohort_activity.cohort_month,
        cohort_activity.months_since_first_order,
        cohort_sizes.cohort_size,
        cohort_activity.active_customers,
        round(
            {{ safe_divide('cohort_activity.active_customers', 'cohort_sizes.cohort_size') }},
            4
        ) as retention_rate

    from cohort_activity

    inner join cohort_sizes
        on cohort_activity.cohort_month = cohort_sizes.cohort_month

)

select * from final
