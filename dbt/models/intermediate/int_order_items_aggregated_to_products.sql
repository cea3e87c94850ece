-- Rolls sold order lines up to one row per product that was ever ordered.
-- Only lines of orders that count as revenue are counted as sold.

with

order_items as (

    select * from {{ ref('int_order_items_priced') }}

),

item_returns as (

    select * from {{ ref('int_returns_aggregated_to_order_items') }}

),

sold_items as (

    select
        order_items.*,
        coalesce(item_returns.quantity_returned, 0) as quantity_returned,
        coalesce(item_returns.refund_amount, 0) as refund_amount

    from order_items

    left join item_returns
        on order_items.order_item_id = item_returns.order_item_id

    where order_items.counts_as_revenue

),

aggregated as (

    select
        product_id,
        count(distinct order_id) as order_count,
        sum(quantity) as units_sold,
        sum(quantity_returned) as units_returned,
        sum(gross_amount) as gross_amount,
        sum(discount_amount) as discount_amount,
        sum(net_amount) - sum(refund_amount) as net_revenue,
        sum(cost_of_goods) as cost_of_goods,
        min(order_date) as first_sold_on,
        max(order_date) as last_sold_on

    from sold_items
    group by product_id

)

select * from aggregated
