-- Every order's items_subtotal equals the sum of its lines' net amounts in the
-- order_items mart, i.e. the two marts agree. Returns the orders that differ.

with

orders as (

    select * from {{ ref('orders') }}

),

order_items as (

    select * from {{ ref('order_items') }}

),

line_totals as (

    select
        order_id,
        sum(net_amount) as lines_net_amount

    from order_items
    group by order_id

)

select
    orders.order_id,
    orders.items_subtotal,
    line_totals.lines_net_amount

from orders

left join line_totals
    on orders.order_id = line_totals.order_id

where orders.items_subtotal != coalesce(line_totals.lines_net_amount, 0)
