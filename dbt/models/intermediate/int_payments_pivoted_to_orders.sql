-- Pivots payment attempts to one row per order: the successfully paid amount
-- per payment method, refunds of cancelled orders and failed attempts.

{%- set payment_methods = var('payment_methods') %}

with

payments as (

    select * from {{ ref('stg_shop__payments') }}

),

pivoted as (

    select
        order_id,

        {% for payment_method in payment_methods -%}
        sum(
            case
                when payment_status = 'success' and payment_method = '{{ payment_method }}' then amount
                else 0
            end
        ) as {{ payment_method }}_amount,
        {% endfor -%}

        sum(case when payment_status = 'success' then amount else 0 end) as amount_paid,
        sum(case when payment_status = 'refunded' then amount else 0 end) as amount_refunded,
        count(*) as payment_attempt_count,
        sum(case when payment_status = 'failed' then 1 else 0 end) as failed_payment_count,
        max(case when payment_status = 'success' then attempted_at end) as paid_at

    from payments
    group by order_id

)

select * from pivoted
