-- Rolls orders up to one row per customer who placed at least one order.
-- Spend figures only count orders that count as revenue (paid, not cancelled).

with

orders as (

    select * from {{ ref('int_orders_joined') }}

),

aggregated as (

    select
        customer_id,
        count(*) as order_count,
        sum(case when counts_as_revenue then 1 else 0 end) as paid_order_count,
        sum(case when order_status = 'cancelled' then 1 else 0 end) as cancelled_order_count,
        min(case when counts_as_revenue then ordered_at end) as first_order_at,
        max(case when counts_as_revenue then ordered_at end) as last_order_at,
        sum(net_revenue) as lifetime_net_revenue,
        sum(case when counts_as_revenue then refund_amount else 0 end) as lifetime_refund_amount,
        sum(case when counts_as_revenue then units_returned else 0 end) as lifetime_units_returned

    from orders
    group by customer_id

)

select * from aggregated
