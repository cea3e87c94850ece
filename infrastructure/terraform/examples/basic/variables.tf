variable "project_id" {
  description = "The GCP project of the service account, and of the BigQuery environments that name no project of their own."
  type        = string
}
