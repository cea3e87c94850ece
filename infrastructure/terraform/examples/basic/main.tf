provider "google" {
  project = var.project_id
}

# Reads infrastructure/environments.yaml (the module's default): one dataset per environment whose
# adapter is bigquery, and the dbt service account with access to those datasets only.
module "dbt_bigquery" {
  source = "../.."

  project_id = var.project_id
}
