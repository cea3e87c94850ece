-- The daily revenue mart neither loses nor double-counts revenue: per month,
-- its net revenue equals that of the orders placed in the calendar's range.
-- Returns the months that differ.

with

daily_revenue as (

    select * from {{ ref('daily_revenue') }}

),

orders as (

    select * from {{ ref('orders') }}
    where order_date between cast('{{ var("calendar_start_date") }}' as date)
        and cast('{{ var("calendar_end_date") }}' as date)

),

daily_by_month as (

    select
        month_start_date,
        sum(net_revenue) as net_revenue

    from daily_revenue
    group by month_start_date

),

orders_with_month as (

    select
        cast({{ dbt.date_trunc('month', 'order_date') }} as date) as month_start_date,
        net_revenue

    from orders

),

orders_by_month as (

    select
        month_start_date,
        sum(net_revenue) as net_revenue

    from orders_with_month
    group by month_start_date

)

select
    coalesce(daily_by_month.month_start_date, orders_by_month.month_start_date) as month_start_date,
    daily_by_month.net_revenue as daily_revenue_net_revenue,
    orders_by_month.net_revenue as orders_net_revenue

from daily_by_month

full outer join orders_by_month
    on daily_by_month.month_start_date = orders_by_month.month_start_date

where coalesce(daily_by_month.net_revenue, 0) != coalesce(orders_by_month.net_revenue, 0)
