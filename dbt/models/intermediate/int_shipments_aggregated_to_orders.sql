-- Rolls parcels up to one row per shipped order (an order can ship in two parcels).

with

shipments as (

    select * from {{ ref('stg_shop__shipments') }}

),

order_carriers as (

    select distinct
        order_id,
        carrier

    from shipments

),

carriers_listed as (

    select
        order_id,
        {{ dbt.listagg('carrier', "', '", 'order by carrier') }} as carriers

    from order_carriers
    group by order_id

),

aggregated as (

    select
        order_id,
        count(*) as shipment_count,
        min(shipped_at) as first_shipped_at,
        -- an order is delivered only once its last parcel has arrived
        case when count(delivered_at) = count(*) then max(delivered_at) end as delivered_at,
        sum(shipping_cost) as shipping_cost,
        {{ dbt.bool_or("service_level = 'express'") }} as is_express

    from shipments
    group by order_id

),

final as (

    select
        aggregated.*,
        carriers_listed.carriers

    from aggregated

    left join carriers_listed
        on aggregated.order_id = carriers_listed.order_id

)

select * from final
