-- Joins everything known about an order into one row per order: its lines,
-- payments, parcels and returns, plus the customer's order sequence.

{%- set payment_methods = var('payment_methods') %}

with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

order_items as (

    select * from {{ ref('int_order_items_aggregated_to_orders') }}

),

order_payments as (

    select * from {{ ref('int_payments_pivoted_to_orders') }}

),

order_shipments as (

    select * from {{ ref('int_shipments_aggregated_to_orders') }}

),

joined as (

    select
        orders.order_id,
        orders.customer_id,
        orders.store_id,
        orders.order_status,
        orders.counts_as_revenue,
        orders.promo_code,
        orders.ordered_at,
        orders.order_date,

        -- lines
        coalesce(order_items.line_count, 0) as line_count,
        coalesce(order_items.unit_count, 0) as unit_count,
        coalesce(order_items.gross_amount, 0) as gross_amount,
        coalesce(order_items.discount_amount, 0) as discount_amount,
        coalesce(order_items.items_subtotal, 0) as items_subtotal,
        orders.shipping_fee,
        coalesce(order_items.items_subtotal, 0) + orders.shipping_fee as order_total,
        coalesce(order_items.cost_of_goods, 0) as cost_of_goods,

        -- payments
        {% for payment_method in payment_methods -%}
        coalesce(order_payments.{{ payment_method }}_amount, 0) as {{ payment_method }}_amount,
        {% endfor -%}
        coalesce(order_payments.amount_paid, 0) as amount_paid,
        coalesce(order_payments.amount_refunded, 0) as amount_refunded_on_cancellation,
        coalesce(order_payments.payment_attempt_count, 0) as payment_attempt_count,
        coalesce(order_payments.failed_payment_count, 0) as failed_payment_count,
        order_payments.paid_at,

        -- shipping
        coalesce(order_shipments.shipment_count, 0) as shipment_count,
        coalesce(order_shipments.is_express, false) as is_express,
        order_shipments.carriers,
        coalesce(order_shipments.shipping_cost, 0) as shipping_cost,
        order_shipments.first_shipped_at,
        order_shipments.delivered_at,

        -- returns
        coalesce(order_items.units_returned, 0) as units_returned,
        coalesce(order_items.refund_amount, 0) as refund_amount,
        order_items.last_returned_at

    from orders

    left join order_items
        on orders.order_id = order_items.order_id

    left join order_payments
        on orders.order_id = order_payments.order_id

    left join order_shipments
        on orders.order_id = order_shipments.order_id

),

final as (

    select
        *,

        row_number() over (
            partition by customer_id
            order by ordered_at, order_id
        ) as customer_order_number,

        -- revenue after returns; cancelled and unpaid orders earn nothing
        case when counts_as_revenue then items_subtotal - refund_amount else 0 end as net_revenue,

        -- the latest event that changed the order; drives the incremental orders mart
        -- (every argument is coalesced: greatest() returns null on BigQuery if any input is null)
        greatest(
            ordered_at,
            coalesce(paid_at, ordered_at),
            coalesce(first_shipped_at, ordered_at),
            coalesce(delivered_at, ordered_at),
            coalesce(last_returned_at, ordered_at)
        ) as order_updated_at

    from joined

)

select * from final
