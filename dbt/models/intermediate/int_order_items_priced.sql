-- Prices every order line: list price valid on the order date, the discount
-- granted against it, what was charged, and the cost of the goods sold.

with

order_items as (

    select * from {{ ref('stg_shop__order_items') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

products as (

    select * from {{ ref('stg_shop__products') }}

),

price_windows as (

    select * from {{ ref('int_product_prices_windowed') }}

),

order_items_with_prices as (

    select
        order_items.order_item_id,
        order_items.order_id,
        order_items.product_id,
        orders.customer_id,
        orders.store_id,
        orders.ordered_at,
        orders.order_date,
        orders.order_status,
        orders.counts_as_revenue,
        order_items.quantity,
        price_windows.list_price,
        order_items.unit_price,
        -- cost is today's catalogue cost; the products snapshot keeps its history
        products.unit_cost

    from order_items

    inner join orders
        on order_items.order_id = orders.order_id

    left join products
        on order_items.product_id = products.product_id

    left join price_windows
        on order_items.product_id = price_windows.product_id
            and orders.order_date >= price_windows.valid_from
            and (price_windows.valid_to is null or orders.order_date < price_windows.valid_to)

),

final as (

    select
        *,
        quantity * list_price as gross_amount,
        quantity * (list_price - unit_price) as discount_amount,
        quantity * unit_price as net_amount,
        quantity * unit_cost as cost_of_goods

    from order_items_with_prices

)

select * from final
