{#-
    `dbt docs generate` against the BigQuery test double (bqemulator 1.4), never against BigQuery.

    dbt-bigquery builds its catalog from `<dataset>.__TABLES__` (row counts and sizes) and
    `INFORMATION_SCHEMA.COLUMN_FIELD_PATHS` (nested fields and column descriptions); the emulator
    has neither, so the catalog fails with "Not found: Table ...__TABLES__". These overrides read
    the same facts from views it does have: INFORMATION_SCHEMA.TABLES, COLUMNS, PARTITIONS (row
    counts and sizes) and TABLE_OPTIONS (descriptions). They return the columns dbt-bigquery's
    catalog returns, without date-shard grouping, nested-field paths or column descriptions
    (which dbt docs takes from the YAML anyway).

    Three macros: the two entry points dbt dispatches to (`bigquery__get_catalog`, for a whole
    dataset, and `bigquery__get_catalog_relations`, for `docs generate --select`), and the query
    they share, reached through adapter.dispatch so that it resolves both when these files are
    copied into a project's macros and when this folder is installed as the package
    `bigquery_emulator_catalog`.
-#}

{% macro bigquery__get_catalog(information_schema, schemas) -%}
    {%- if (schemas | length) == 0 -%}
        {%- set query = "select 1 as id limit 0" -%}
    {%- else -%}
        {%- set where -%}
            {%- for schema in schemas -%}
                upper(tables.table_schema) = upper('{{ schema }}')
                {%- if not loop.last %} or {% endif -%}
            {%- endfor -%}
        {%- endset -%}
        {%- set query = adapter.dispatch('emulator_catalog_sql', 'bigquery_emulator_catalog')(information_schema, where) -%}
    {%- endif -%}
    {{ return(run_query(query)) }}
{%- endmacro %}


{% macro bigquery__get_catalog_relations(information_schema, relations) -%}
    {%- if (relations | length) == 0 -%}
        {%- set query = "select 1 as id limit 0" -%}
    {%- else -%}
        {%- set where -%}
            {%- for relation in relations -%}
                (
                    upper(tables.table_schema) = upper('{{ relation.schema }}')
                    and upper(tables.table_name) = upper('{{ relation.identifier }}')
                )
                {%- if not loop.last %} or {% endif -%}
            {%- endfor -%}
        {%- endset -%}
        {%- set query = adapter.dispatch('emulator_catalog_sql', 'bigquery_emulator_catalog')(information_schema, where) -%}
    {%- endif -%}
    {{ return(run_query(query)) }}
{%- endmacro %}


{% macro bigquery__emulator_catalog_sql(information_schema, where) -%}
    with

    tables as (
        select
            tables.table_catalog,
            tables.table_schema,
            tables.table_name,
            case
                when tables.table_type = 'VIEW' then 'view'
                when tables.table_type = 'MATERIALIZED VIEW' then 'materialized view'
                when tables.table_type = 'EXTERNAL' then 'external'
                else 'table'
            end as table_type,
            tables.table_type = 'BASE TABLE' as is_table
        from {{ information_schema.replace(information_schema_view='TABLES') }} as tables
        where {{ where }}
    ),

    descriptions as (
        select table_catalog, table_schema, table_name, trim(option_value, '"') as table_comment
        from {{ information_schema.replace(information_schema_view='TABLE_OPTIONS') }}
        where option_name = 'description'
    ),

    table_stats as (
        select
            table_catalog,
            table_schema,
            table_name,
            sum(total_rows) as row_count,
            sum(total_logical_bytes) as size_bytes
        from {{ information_schema.replace(information_schema_view='PARTITIONS') }}
        group by 1, 2, 3
    ),

    columns as (
        select
            table_catalog,
            table_schema,
            table_name,
            column_name,
            ordinal_position as column_index,
            data_type as column_type,
            is_partitioning_column = 'YES' as is_partitioning_column,
            clustering_ordinal_position
        from {{ information_schema.replace(information_schema_view='COLUMNS') }}
        where ordinal_position is not null
    ),

    column_stats as (
        select
            table_catalog,
            table_schema,
            table_name,
            logical_or(is_partitioning_column) as is_partitioned,
            max(case when is_partitioning_column then column_name end) as partition_column,
            logical_or(clustering_ordinal_position is not null) as is_clustered,
            string_agg(
                case when clustering_ordinal_position is not null then column_name end,
                ', ' order by clustering_ordinal_position
            ) as clustering_columns
        from columns
        group by 1, 2, 3
    )

    select
        tables.table_catalog as table_database,
        tables.table_schema,
        tables.table_name,
        tables.table_type,
        descriptions.table_comment,
        cast(null as string) as table_owner,
        coalesce(columns.column_name, '<unknown>') as column_name,
        coalesce(columns.column_index, 1) as column_index,
        coalesce(columns.column_type, '<unknown>') as column_type,
        '' as column_comment,

        '# Rows' as `stats__num_rows__label`,
        table_stats.row_count as `stats__num_rows__value`,
        'Approximate count of rows in this table' as `stats__num_rows__description`,
        tables.is_table and table_stats.row_count is not null as `stats__num_rows__include`,

        'Approximate Size' as `stats__num_bytes__label`,
        table_stats.size_bytes as `stats__num_bytes__value`,
        'Approximate size of table as reported by BigQuery' as `stats__num_bytes__description`,
        tables.is_table and table_stats.size_bytes is not null as `stats__num_bytes__include`,

        'Partitioned By' as `stats__partitioning_type__label`,
        column_stats.partition_column as `stats__partitioning_type__value`,
        'The partitioning column for this table' as `stats__partitioning_type__description`,
        coalesce(column_stats.is_partitioned, false) as `stats__partitioning_type__include`,

        'Clustered By' as `stats__clustering_fields__label`,
        column_stats.clustering_columns as `stats__clustering_fields__value`,
        'The clustering columns for this table' as `stats__clustering_fields__description`,
        coalesce(column_stats.is_clustered, false) as `stats__clustering_fields__include`

    from tables
    left join descriptions
        on descriptions.table_catalog = tables.table_catalog
        and descriptions.table_schema = tables.table_schema
        and descriptions.table_name = tables.table_name
    left join table_stats
        on table_stats.table_catalog = tables.table_catalog
        and table_stats.table_schema = tables.table_schema
        and table_stats.table_name = tables.table_name
    left join column_stats
        on column_stats.table_catalog = tables.table_catalog
        and column_stats.table_schema = tables.table_schema
        and column_stats.table_name = tables.table_name
    left join columns
        on columns.table_catalog = tables.table_catalog
        and columns.table_schema = tables.table_schema
        and columns.table_name = tables.table_name
    order by tables.table_schema, tables.table_name, column_index
{%- endmacro %}
