-- One row per calendar day between the calendar_start_date and
-- calendar_end_date project vars (both inclusive), with calendar attributes.

{%- set start_date = var('calendar_start_date') %}
{%- set end_date = var('calendar_end_date') %}
{%- set day_count = (
    modules.datetime.date.fromisoformat(end_date)
    - modules.datetime.date.fromisoformat(start_date)
).days + 1 %}

with

day_numbers as (

    {{ dbt.generate_series(day_count) }}

),

calendar_days as (

    select
        -- generated_number runs from 1 to day_count; it is a float on BigQuery
        -- (built with power()), and date arithmetic there needs an integer
        cast(
            {{ dbt.dateadd(
                'day',
                'cast(generated_number as ' ~ dbt.type_int() ~ ') - 1',
                "cast('" ~ start_date ~ "' as date)"
            ) }}
            as date
        ) as date_day

    from day_numbers

),

with_attributes as (

    select
        date_day,
        {{ day_of_week_name('date_day') }} as day_of_week_name,
        {{ iso_day_of_week('date_day') }} as iso_day_of_week,
        cast({{ dbt.date_trunc('month', 'date_day') }} as date) as month_start_date,
        extract(year from date_day) as calendar_year

    from calendar_days

),

final as (

    select
        *,
        -- weeks start on Monday (ISO); date_trunc('week') would start on Sunday on BigQuery
        cast({{ dbt.dateadd('day', '1 - iso_day_of_week', 'date_day') }} as date) as week_start_date,
        iso_day_of_week in (6, 7) as is_weekend

    from with_attributes

)

select * from final
