-- depends_on: {{ ref('raw_product_prices') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'product_prices') }}

),

renamed as (

    select
        -- ids
        id as product_price_id,
        product_id,

        -- numerics
        {{ cents_to_currency('list_price_cents') }} as list_price,

        -- dates and timestamps
        cast(effective_from as date) as effective_from,
        cast(created_at as {{ dbt.type_timestamp() }}) as entered_at

    from source

)

select * from renamed
