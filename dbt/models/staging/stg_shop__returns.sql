-- depends_on: {{ ref('raw_returns') }}
-- (the source is a seed of this project; the ref above makes dbt load it first)

with

source as (

    select * from {{ source('shop', 'returns') }}

),

renamed as (

    select
        -- ids
        id as return_id,
        order_item_id,

        -- strings
        -- customers may skip the reason question
        coalesce({{ clean_enum('reason') }}, 'not_given') as return_reason,

        -- numerics
        quantity as quantity_returned,
        {{ cents_to_currency('refund_cents') }} as refund_amount,

        -- timestamps
        cast(returned_at as {{ dbt.type_timestamp() }}) as returned_at

    from source

)

select * from renamed
