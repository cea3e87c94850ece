-- depends_on: {{ ref('raw_order_items') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'order_items') }}

),

renamed as (

    select
        -- ids
        id as order_item_id,
        order_id,
        product_id,

        -- numerics
        quantity,
        {{ cents_to_currency('unit_price_cents') }} as unit_price

    from source

)

select * from renamed
