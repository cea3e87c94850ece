-- One row per parcel, with handling and transit times against the promise.

with

shipments as (

    select * from {{ ref('stg_shop__shipments') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

joined as (

    select
        shipments.shipment_id,
        shipments.order_id,
        orders.customer_id,
        orders.store_id,
        shipments.carrier,
        shipments.service_level,
        shipments.shipping_cost,
        shipments.is_delivered,
        orders.ordered_at,
        shipments.shipped_at,
        shipments.delivered_at,
        -- promised transit in calendar days: express 3, standard 7
        case when shipments.service_level = 'express' then 3 else 7 end as promised_transit_days

    from shipments

    inner join orders
        on shipments.order_id = orders.order_id

),

final as (

    select
        *,
        {{ dbt.datediff('ordered_at', 'shipped_at', 'day') }} as days_to_ship,  -- noqa: LT05
        {{ dbt.datediff('shipped_at', 'delivered_at', 'day') }} as transit_days,  -- noqa: LT05
        -- parcels still in transit are not late yet
        coalesce(
            {{ dbt.datediff('shipped_at', 'delivered_at', 'day') }} > promised_transit_days,  -- noqa: LT05
            false
        ) as is_delivered_late

    from joined

)

select * from final
