-- depends_on: {{ ref('raw_orders') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'orders') }}

),

renamed as (

    select
        -- ids
        id as order_id,
        customer_id,
        store_id,

        -- strings
        -- the order system writes both "canceled" and "cancelled"
        case
            when {{ clean_enum('status') }} = 'canceled' then 'cancelled'
            else {{ clean_enum('status') }}
        end as order_status,
        upper(trim(promo_code)) as promo_code,

        -- numerics
        {{ cents_to_currency('shipping_fee_cents') }} as shipping_fee,

        -- booleans
        -- paid orders count as revenue; pending (unpaid) and cancelled ones do not
        {{ clean_enum('status') }} in ('processing', 'shipped', 'delivered', 'returned') as counts_as_revenue,

        -- dates and timestamps
        cast(created_at as {{ dbt.type_timestamp() }}) as ordered_at,
        cast(created_at as date) as order_date

    from source

)

select * from renamed
