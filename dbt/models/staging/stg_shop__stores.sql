-- depends_on: {{ ref('raw_stores') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'stores') }}

),

renamed as (

    select
        -- ids
        id as store_id,

        -- strings
        trim(name) as store_name,
        {{ clean_enum('channel') }} as sales_channel,
        upper(trim(country)) as country_code,

        -- dates
        cast(opened_on as date) as opened_on

    from source

)

select * from renamed
