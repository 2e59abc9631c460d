-- Daily costs by service and one more grouping, from a Cost and Usage Report (CUR 2.0)
-- table, in Athena's SQL (Trino). The DuckDB engine runs this same text, transpiled by
-- sqlglot (the only difference that matters: Trino's element_at(map, key) is DuckDB's
-- map[key]; both give NULL for a missing key).
--
-- _util/sources/cur_sql.py fills the names in braces below: the report's table (Athena:
-- "database"."table"; DuckDB: a view over the Parquet files), the metric's cost
-- expression, the grouping's, the record type filter, and quoted literals.
-- One row per (day, product code, group, currency): never line items.
SELECT
  CAST(line_item_usage_start_date AS DATE) AS usage_date,
  -- Cost Explorer's SERVICE: tax is a service of its own; EC2 is split into instance
  -- usage ("... - Compute") and the rest ("EC2 - Other"), see cur_services.py.
  CASE
    WHEN line_item_line_item_type = 'Tax' THEN 'Tax'
    WHEN line_item_product_code = 'AmazonEC2'
         AND COALESCE(product_product_family, '') NOT IN ({ec2_compute_families})
         AND line_item_line_item_type NOT IN ('RIFee', 'DiscountedUsage')
      THEN {ec2_other_code}
    ELSE line_item_product_code
  END AS product_code,
  {group_value} AS group_value,
  MAX({group_name}) AS group_name,
  line_item_currency_code AS unit,
  SUM({amount}) AS amount
FROM {table}
WHERE billing_period IN ({periods})
  AND line_item_usage_start_date >= CAST({start} AS TIMESTAMP)
  AND line_item_usage_start_date < CAST({end} AS TIMESTAMP)
  AND {record_types}
GROUP BY 1, 2, 3, 5
