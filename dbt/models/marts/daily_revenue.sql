-- One row per calendar day (calendar_start_date .. calendar_end_date), days
-- without orders included, with orders and revenue by order date.

with

calendar_days as (

    select * from {{ ref('int_dates_spined') }}

),

orders as (

    select * from {{ ref('int_orders_joined') }}

),

customers as (

    select * from {{ ref('int_orders_aggregated_to_customers') }}

),

daily_orders as (

    select
        order_date,
        count(*) as orders_placed,
        sum(case when counts_as_revenue then 1 else 0 end) as paid_orders,
        sum(case when order_status = 'cancelled' then 1 else 0 end) as cancelled_orders,
        sum(case when counts_as_revenue then unit_count else 0 end) as units_sold,
        sum(case when counts_as_revenue then gross_amount else 0 end) as gross_amount,
        sum(case when counts_as_revenue then discount_amount else 0 end) as discount_amount,
        sum(case when counts_as_revenue then items_subtotal else 0 end) as items_subtotal,
        sum(case when counts_as_revenue then refund_amount else 0 end) as refund_amount,
        sum(net_revenue) as net_revenue,
        sum(case when counts_as_revenue then shipping_fee else 0 end) as shipping_fee_revenue

    from orders
    group by order_date

),

customer_first_order_dates as (

    select
        customer_id,
        cast(first_order_at as date) as first_order_date

    from customers
    where first_order_at is not null

),

daily_new_customers as (

    select
        first_order_date,
        count(*) as new_customers

    from customer_first_order_dates
    group by first_order_date

),

joined as (

    select
        calendar_days.date_day,
        calendar_days.day_of_week_name,
        calendar_days.is_weekend,
        calendar_days.week_start_date,
        calendar_days.month_start_date,
        coalesce(daily_orders.orders_placed, 0) as orders_placed,
        coalesce(daily_orders.paid_orders, 0) as paid_orders,
        coalesce(daily_orders.cancelled_orders, 0) as cancelled_orders,
        coalesce(daily_new_customers.new_customers, 0) as new_customers,
        coalesce(daily_orders.units_sold, 0) as units_sold,
        coalesce(daily_orders.gross_amount, 0) as gross_amount,
        coalesce(daily_orders.discount_amount, 0) as discount_amount,
        coalesce(daily_orders.items_subtotal, 0) as items_subtotal,
        coalesce(daily_orders.refund_amount, 0) as refund_amount,
        coalesce(daily_orders.net_revenue, 0) as net_revenue,
        coalesce(daily_orders.shipping_fee_revenue, 0) as shipping_fee_revenue

    from calendar_days

    left join daily_orders
        on calendar_days.date_day = daily_orders.order_date

    left join daily_new_customers
        on calendar_days.date_day = daily_new_customers.first_order_date

),

final as (

    select
        *,
        sum(net_revenue) over (
            order by date_day
            rows between 6 preceding and current row
        ) as net_revenue_trailing_7_days,
        sum(net_revenue) over (
            partition by month_start_date
            order by date_day
            rows between unbounded preceding and current row
        ) as net_revenue_month_to_date

    from joined

)

select * from final
