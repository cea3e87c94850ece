-- One row per product in the catalogue, with its current price, supplier and sales.

with

products as (

    select * from {{ ref('stg_shop__products') }}

),

suppliers as (

    select * from {{ ref('stg_shop__suppliers') }}

),

price_windows as (

    select * from {{ ref('int_product_prices_windowed') }}

),

product_sales as (

    select * from {{ ref('int_order_items_aggregated_to_products') }}

),

current_prices as (

    select
        product_id,
        list_price as current_list_price,
        valid_from as current_price_since

    from price_windows
    where is_current_price

),

price_change_counts as (

    select
        product_id,
        -- the first window is the launch price, not a change
        count(*) - 1 as price_change_count

    from price_windows
    group by product_id

),

final as (

    select
        -- ids
        products.product_id,
        products.supplier_id,

        -- attributes
        products.sku,
        products.product_name,
        products.category,
        suppliers.supplier_name,
        suppliers.lead_time_days as supplier_lead_time_days,
        products.is_discontinued,

        -- pricing
        products.unit_cost,
        current_prices.current_list_price,
        current_prices.current_price_since,
        coalesce(price_change_counts.price_change_count, 0) as price_change_count,
        round(
            {{ safe_divide(
                'current_prices.current_list_price - products.unit_cost',
                'current_prices.current_list_price'
            ) }},
            4
        ) as current_margin_rate,

        -- sales
        coalesce(product_sales.order_count, 0) as order_count,
        coalesce(product_sales.units_sold, 0) as units_sold,
        coalesce(product_sales.units_returned, 0) as units_returned,
        round({{ safe_divide('product_sales.units_returned', 'product_sales.units_sold') }}, 4) as return_rate,
        coalesce(product_sales.gross_amount, 0) as gross_amount,
        coalesce(product_sales.discount_amount, 0) as discount_amount,
        coalesce(product_sales.net_revenue, 0) as net_revenue,
        coalesce(product_sales.cost_of_goods, 0) as cost_of_goods,
        product_sales.first_sold_on,
        product_sales.last_sold_on

    from products

    left join suppliers
        on products.supplier_id = suppliers.supplier_id

    left join current_prices
        on products.product_id = current_prices.product_id

    left join price_change_counts
        on products.product_id = price_change_counts.product_id

    left join product_sales
        on products.product_id = product_sales.product_id

)

select * from final
