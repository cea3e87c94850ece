-- One row per order line, with product attributes, pricing and returns.

with

order_items as (

    select * from {{ ref('int_order_items_priced') }}

),

item_returns as (

    select * from {{ ref('int_returns_aggregated_to_order_items') }}

),

products as (

    select * from {{ ref('stg_shop__products') }}

),

final as (

    select
        -- ids
        order_items.order_item_id,
        order_items.order_id,
        order_items.product_id,
        order_items.customer_id,
        order_items.store_id,

        -- product
        products.sku,
        products.product_name,
        products.category,

        -- order
        order_items.order_status,
        order_items.counts_as_revenue,
        order_items.order_date,
        order_items.ordered_at,

        -- amounts
        order_items.quantity,
        order_items.list_price,
        order_items.unit_price,
        order_items.unit_cost,
        order_items.gross_amount,
        order_items.discount_amount,
        order_items.net_amount,
        order_items.cost_of_goods,
        coalesce(item_returns.quantity_returned, 0) as quantity_returned,
        coalesce(item_returns.refund_amount, 0) as refund_amount,
        item_returns.first_returned_at

    from order_items

    left join item_returns
        on order_items.order_item_id = item_returns.order_item_id

    left join products
        on order_items.product_id = products.product_id

)

select * from final
