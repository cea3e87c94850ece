-- Ad-hoc analysis (compiled by dbt, never materialized): how each promotion
-- code performs in the paid orders that used it.
-- Run `dbt compile --select promo_code_performance` and paste the SQL from
-- target/compiled/ into your SQL client.

with

orders as (

    select * from {{ ref('orders') }}
    where counts_as_revenue

),

orders_with_promo_code as (

    select
        *,
        coalesce(promo_code, 'none') as promo_code_used

    from orders

),

by_promo_code as (

    select
        promo_code_used as promo_code,
        count(*) as paid_orders,
        sum(case when is_first_order then 1 else 0 end) as first_orders,
        sum(gross_amount) as gross_amount,
        sum(discount_amount) as discount_amount,
        sum(net_revenue) as net_revenue

    from orders_with_promo_code
    group by promo_code_used

)

select
    *,
    round({{ safe_divide('discount_amount', 'gross_amount') }}, 4) as discount_rate,
    round({{ safe_divide('net_revenue', 'paid_orders') }}, 2) as net_revenue_per_order

from by_promo_code
order by net_revenue desc
