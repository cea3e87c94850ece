-- depends_on: {{ ref('raw_shipments') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'shipments') }}

),

renamed as (

    select
        -- ids
        id as shipment_id,
        order_id,

        -- strings
        {{ clean_enum('carrier') }} as carrier,
        {{ clean_enum('service_level') }} as service_level,

        -- numerics
        {{ cents_to_currency('cost_cents') }} as shipping_cost,

        -- booleans
        delivered_at is not null as is_delivered,

        -- timestamps
        cast(shipped_at as {{ dbt.type_timestamp() }}) as shipped_at,
        cast(delivered_at as {{ dbt.type_timestamp() }}) as delivered_at

    from source

)

select * from renamed
