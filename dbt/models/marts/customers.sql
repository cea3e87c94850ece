-- One row per customer account, with order history and a value segment.

with

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

customer_orders as (

    select * from {{ ref('int_orders_aggregated_to_customers') }}

),

orders as (

    select * from {{ ref('int_orders_joined') }}

),

-- recency is measured against the newest order in the data, not the wall
-- clock, so the mart is reproducible from the same extract
data_as_of as (

    select cast(max(ordered_at) as date) as as_of_date
    from orders

),

joined as (

    select
        customers.customer_id,
        customers.customer_name,
        customers.email,
        customers.country_code,
        customers.acquisition_channel,
        customers.has_marketing_opt_in,
        customers.signed_up_at,
        coalesce(customer_orders.order_count, 0) as order_count,
        coalesce(customer_orders.paid_order_count, 0) as paid_order_count,
        coalesce(customer_orders.cancelled_order_count, 0) as cancelled_order_count,
        customer_orders.first_order_at,
        customer_orders.last_order_at,
        coalesce(customer_orders.lifetime_net_revenue, 0) as lifetime_net_revenue,
        coalesce(customer_orders.lifetime_refund_amount, 0) as lifetime_refund_amount,
        coalesce(customer_orders.lifetime_units_returned, 0) as lifetime_units_returned,
        data_as_of.as_of_date

    from customers

    left join customer_orders
        on customers.customer_id = customer_orders.customer_id

    cross join data_as_of

),

final as (

    select
        customer_id,
        customer_name,
        email,
        country_code,
        acquisition_channel,
        has_marketing_opt_in,
        signed_up_at,
        order_count,
        paid_order_count,
        cancelled_order_count,
        first_order_at,
        last_order_at,
        cast({{ dbt.date_trunc('month', 'first_order_at') }} as date) as cohort_month,
        lifetime_net_revenue,
        lifetime_refund_amount,
        lifetime_units_returned,
        round({{ safe_divide('lifetime_net_revenue', 'paid_order_count') }}, 2) as average_order_value,
        {{ dbt.datediff('last_order_at', 'as_of_date', 'day') }} as days_since_last_order,  -- noqa: LT05

        -- checked top-down: the first matching rule wins
        case
            when paid_order_count = 0 then 'prospect'
            when lifetime_net_revenue >= {{ var('vip_lifetime_revenue_threshold') }} then 'vip'
            when paid_order_count = 1 then 'new'
            else 'returning'
        end as customer_segment

    from joined

)

select * from final
