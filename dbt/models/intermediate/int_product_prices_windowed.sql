-- Turns the list price entries into validity windows: one row per product and
-- price period, [valid_from, valid_to), with valid_to null for the current price.

with

product_prices as (

    select * from {{ ref('stg_shop__product_prices') }}

),

ranked_entries as (

    select
        *,
        -- a same-day correction (higher id) supersedes the earlier entry for that day
        row_number() over (
            partition by product_id, effective_from
            order by product_price_id desc
        ) as entry_rank

    from product_prices

),

effective_prices as (

    select * from ranked_entries
    where entry_rank = 1

),

windowed as (

    select
        product_price_id,
        product_id,
        list_price,
        lag(list_price) over (
            partition by product_id order by effective_from
        ) as previous_list_price,
        effective_from as valid_from,
        -- a price is valid until the next price takes effect (exclusive)
        lead(effective_from) over (
            partition by product_id order by effective_from
        ) as valid_to,
        entered_at

    from effective_prices

),

final as (

    select
        *,
        valid_to is null as is_current_price

    from windowed

)

select * from final
