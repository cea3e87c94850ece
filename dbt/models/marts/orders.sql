{{
    config(
        materialized='incremental',
        unique_key='order_id',
        on_schema_change='append_new_columns'
    )
}}

-- One row per order. Incremental: a run only re-processes orders touched by an
-- event (payment, parcel, delivery, return) since the last run, and each
-- adapter merges them in with its default strategy on order_id.

with

orders as (

    select * from {{ ref('int_orders_joined') }}

    {% if is_incremental() %}
    -- look back a few days so events that arrive late still update their order
    where order_updated_at >= (
        select {{ timestamp_add('day', -var('incremental_lookback_days'), 'max(order_updated_at)') }}
        from {{ this }}
    )
    {% endif %}

),

final as (

    select
        -- ids
        order_id,
        customer_id,
        store_id,

        -- status
        order_status,
        counts_as_revenue,
        customer_order_number = 1 as is_first_order,
        customer_order_number,
        promo_code,

        -- amounts
        line_count,
        unit_count,
        gross_amount,
        discount_amount,
        items_subtotal,
        shipping_fee,
        order_total,
        amount_paid,
        {% for payment_method in var('payment_methods') -%}
        {{ payment_method }}_amount,
        {% endfor -%}
        amount_refunded_on_cancellation,
        units_returned,
        refund_amount,
        net_revenue,
        cost_of_goods,
        case when counts_as_revenue then net_revenue - cost_of_goods else 0 end as gross_margin,

        -- payments and fulfilment
        payment_attempt_count,
        failed_payment_count,
        shipment_count,
        is_express,
        carriers,
        shipping_cost,

        -- dates and timestamps
        order_date,
        ordered_at,
        paid_at,
        first_shipped_at,
        delivered_at,
        last_returned_at,
        order_updated_at

    from orders

)

select * from final
