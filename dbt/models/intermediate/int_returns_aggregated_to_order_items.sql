-- Rolls returns up to the order line they came from (a line can be returned in
-- several parcels): one row per returned order line.

with

returns as (

    select * from {{ ref('stg_shop__returns') }}

),

aggregated as (

    select
        order_item_id,
        count(*) as return_count,
        sum(quantity_returned) as quantity_returned,
        sum(refund_amount) as refund_amount,
        min(returned_at) as first_returned_at,
        max(returned_at) as last_returned_at

    from returns
    group by order_item_id

)

select * from aggregated
