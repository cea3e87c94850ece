-- depends_on: {{ ref('raw_products') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'products') }}

),

renamed as (

    select
        -- ids
        id as product_id,
        supplier_id,

        -- strings
        upper(trim(sku)) as sku,
        trim(name) as product_name,
        {{ clean_enum('category') }} as category,

        -- numerics
        {{ cents_to_currency('unit_cost_cents') }} as unit_cost,

        -- booleans
        {{ clean_enum('status') }} = 'discontinued' as is_discontinued,

        -- timestamps
        cast(created_at as {{ dbt.type_timestamp() }}) as created_at,
        cast(updated_at as {{ dbt.type_timestamp() }}) as updated_at

    from source

)

select * from renamed
