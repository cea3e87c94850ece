-- A customer cannot order before their account exists. Returns the orders
-- placed before the customer signed up.

with

orders as (

    select * from {{ ref('orders') }}

),

customers as (

    select * from {{ ref('customers') }}

)

select
    orders.order_id,
    orders.ordered_at,
    customers.customer_id,
    customers.signed_up_at

from orders

inner join customers
    on orders.customer_id = customers.customer_id

where orders.ordered_at < customers.signed_up_at
