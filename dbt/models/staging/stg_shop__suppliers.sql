-- depends_on: {{ ref('raw_suppliers') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'suppliers') }}

),

renamed as (

    select
        -- ids
        id as supplier_id,

        -- strings
        trim(name) as supplier_name,
        upper(trim(country)) as country_code,

        -- numerics
        lead_time_days

    from source

)

select * from renamed
