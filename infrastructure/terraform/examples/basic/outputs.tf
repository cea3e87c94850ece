output "service_account_email" {
  description = "Email of the service account dbt runs as."
  value       = module.dbt_bigquery.service_account_email
}

output "datasets" {
  description = "Dataset id of each BigQuery environment, by environment name."
  value       = module.dbt_bigquery.datasets
}

output "dataset_fqns" {
  description = "\"project.dataset\" of each BigQuery environment, by environment name."
  value       = module.dbt_bigquery.dataset_fqns
}
