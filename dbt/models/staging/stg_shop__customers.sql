-- depends_on: {{ ref('raw_customers') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'customers') }}

),

renamed as (

    select
        -- ids
        id as customer_id,

        -- strings
        trim(first_name) as first_name,
        trim(last_name) as last_name,
        concat(trim(first_name), ' ', trim(last_name)) as customer_name,
        lower(trim(email)) as email,
        upper(trim(country)) as country_code,
        {{ clean_enum('signup_source') }} as acquisition_channel,

        -- booleans
        -- consent that was never recorded counts as no consent
        coalesce(lower(trim(marketing_opt_in)) in ('yes', 'y', 'true'), false) as has_marketing_opt_in,

        -- timestamps
        cast(created_at as {{ dbt.type_timestamp() }}) as signed_up_at,
        cast(updated_at as {{ dbt.type_timestamp() }}) as updated_at

    from source

)

select * from renamed
