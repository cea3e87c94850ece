-- Discontinued products must not appear in orders placed after they were
-- discontinued (the catalogue's updated_at marks the discontinuation).
-- Returns the offending order lines.

with

order_items as (

    select * from {{ ref('order_items') }}

),

products as (

    select * from {{ ref('stg_shop__products') }}

)

select
    order_items.order_item_id,
    order_items.ordered_at,
    products.product_id,
    products.updated_at as discontinued_at

from order_items

inner join products
    on order_items.product_id = products.product_id

where products.is_discontinued
    and order_items.ordered_at >= products.updated_at
