output "service_account_email" {
  description = "Email of the service account dbt runs as; create its key with `gcloud iam service-accounts keys create key.json --iam-account=<this email>`."
  value       = google_service_account.main.email
}

output "datasets" {
  description = "Dataset id of each BigQuery environment, by environment name (the keys are the dbt targets)."
  value       = { for name, dataset in google_bigquery_dataset.main : name => dataset.dataset_id }
}

output "dataset_fqns" {
  description = "Fully qualified name (\"project.dataset\") of each BigQuery environment's dataset, by environment name."
  value       = { for name, dataset in google_bigquery_dataset.main : name => "${dataset.project}.${dataset.dataset_id}" }
}

output "service_account_key" {
  description = "The service account's JSON key, base64-encoded (decode with `terraform output -raw service_account_key | base64 --decode > key.json`); null unless create_service_account_key is true."
  value       = one(google_service_account_key.main[*].private_key)
  sensitive   = true
}
