-- depends_on: {{ ref('raw_payments') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'payments') }}

),

renamed as (

    select
        -- ids
        id as payment_id,
        order_id,

        -- strings
        {{ clean_enum('payment_method') }} as payment_method,
        {{ clean_enum('status') }} as payment_status,

        -- numerics
        {{ cents_to_currency('amount_cents') }} as amount,

        -- timestamps
        cast(created_at as {{ dbt.type_timestamp() }}) as attempted_at

    from source

)

select * from renamed
