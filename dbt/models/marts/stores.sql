-- One row per storefront, with its order volume and revenue.

with

stores as (

    select * from {{ ref('stg_shop__stores') }}

),

orders as (

    select * from {{ ref('int_orders_joined') }}

),

store_orders as (

    select
        store_id,
        count(*) as order_count,
        sum(case when counts_as_revenue then 1 else 0 end) as paid_order_count,
        sum(case when order_status = 'cancelled' then 1 else 0 end) as cancelled_order_count,
        count(distinct customer_id) as customer_count,
        sum(net_revenue) as net_revenue,
        sum(case when counts_as_revenue then shipping_fee else 0 end) as shipping_fee_revenue,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date

    from orders
    group by store_id

),

final as (

    select
        stores.store_id,
        stores.store_name,
        stores.sales_channel,
        stores.country_code,
        stores.opened_on,
        coalesce(store_orders.order_count, 0) as order_count,
        coalesce(store_orders.paid_order_count, 0) as paid_order_count,
        coalesce(store_orders.cancelled_order_count, 0) as cancelled_order_count,
        coalesce(store_orders.customer_count, 0) as customer_count,
        coalesce(store_orders.net_revenue, 0) as net_revenue,
        coalesce(store_orders.shipping_fee_revenue, 0) as shipping_fee_revenue,
        round({{ safe_divide('store_orders.net_revenue', 'store_orders.paid_order_count') }}, 2) as average_order_value,
        round(
            {{ safe_divide('store_orders.cancelled_order_count', 'store_orders.order_count') }},
            4
        ) as cancellation_rate,
        store_orders.first_order_date,
        store_orders.last_order_date

    from stores

    left join store_orders
        on stores.store_id = store_orders.store_id

)

select * from final
