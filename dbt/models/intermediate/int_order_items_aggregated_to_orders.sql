-- Rolls priced order lines and their returns up to one row per order.

with

order_items as (

    select * from {{ ref('int_order_items_priced') }}

),

item_returns as (

    select * from {{ ref('int_returns_aggregated_to_order_items') }}

),

order_items_with_returns as (

    select
        order_items.*,
        coalesce(item_returns.quantity_returned, 0) as quantity_returned,
        coalesce(item_returns.refund_amount, 0) as refund_amount,
        item_returns.last_returned_at

    from order_items

    left join item_returns
        on order_items.order_item_id = item_returns.order_item_id

),

aggregated as (

    select
        order_id,
        count(*) as line_count,
        sum(quantity) as unit_count,
        sum(gross_amount) as gross_amount,
        sum(discount_amount) as discount_amount,
        sum(net_amount) as items_subtotal,
        sum(cost_of_goods) as cost_of_goods,
        sum(quantity_returned) as units_returned,
        sum(refund_amount) as refund_amount,
        max(last_returned_at) as last_returned_at

    from order_items_with_returns
    group by order_id

)

select * from aggregated
