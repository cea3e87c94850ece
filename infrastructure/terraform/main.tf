locals {
  # The environments file is the single source of truth: the same file the setup
  # (python -m infrastructure.setup_profiles) and the flow read. Nothing below repeats its values.
  environments_file = coalesce(var.environments_file, "${path.module}/../environments.yaml")
  config            = yamldecode(file(local.environments_file))

  # The adapters the pipeline knows (dbt_pipeline/environments.py). Anything else is a typo that
  # would silently drop an environment from the filter below, so it is refused (see the
  # precondition on the service account).
  known_adapters = ["duckdb", "bigquery", "postgres"]
  unknown_adapters = {
    for name, env in local.config.environments : name => try(env.adapter, null)
    if !contains(local.known_adapters, try(env.adapter, ""))
  }

  # One entry per environment whose adapter is bigquery, with every value Terraform needs resolved:
  #   project: the environment's own, else gcp.project, else var.project_id (the setup uses
  #            GOOGLE_CLOUD_PROJECT where Terraform uses var.project_id);
  #   location: "US" when unset, as in the setup;
  #   labels: var.extra_labels, then the environment's labels, then dbt-environment = <name>;
  #   default_table_expiration_ms: table_expiration_days in milliseconds, null when unset.
  bigquery_environments = {
    for name, env in local.config.environments : name => {
      project    = coalesce(try(env.project, null), try(local.config.gcp.project, null), var.project_id)
      dataset_id = try(env.dataset, null)
      location   = coalesce(try(env.location, null), "US")
      labels = merge(
        var.extra_labels,
        try({ for key, value in env.labels : key => tostring(value) }, {}),
        { "dbt-environment" = name },
      )
      default_table_expiration_ms = try(env.table_expiration_days * 24 * 60 * 60 * 1000, null)
    }
    if try(env.adapter, null) == "bigquery"
  }

  # The projects dbt runs query jobs in: each BigQuery environment's project, once.
  job_projects = toset([for env in local.bigquery_environments : env.project])
}

check "bigquery_environments" {
  assert {
    condition     = length(local.bigquery_environments) > 0
    error_message = "No environment in ${local.environments_file} has adapter bigquery: no dataset is created and the service account gets no role."
  }
}

resource "google_bigquery_dataset" "main" {
  for_each = local.bigquery_environments

  project                     = each.value.project
  dataset_id                  = each.value.dataset_id
  location                    = each.value.location
  friendly_name               = "dbt ${each.key}"
  description                 = "Dataset of the dbt target \"${each.key}\", declared in the pipeline's environments file. Managed by Terraform."
  labels                      = each.value.labels
  default_table_expiration_ms = each.value.default_table_expiration_ms
  delete_contents_on_destroy  = var.dataset_delete_contents_on_destroy

  lifecycle {
    precondition {
      condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", each.value.dataset_id))
      error_message = "environments.${each.key}.dataset in ${local.environments_file} must be set to a BigQuery dataset name: letters, digits and underscores."
    }

    precondition {
      condition = alltrue([
        for key, value in each.value.labels :
        can(regex("^\\p{Ll}[\\p{Ll}0-9_-]{0,62}$", key)) && can(regex("^[\\p{Ll}0-9_-]{0,63}$", value))
      ])
      error_message = "environments.${each.key}.labels in ${local.environments_file}: each key must start with a lowercase letter and, like each value, hold at most 63 lowercase letters, digits, underscores or dashes."
    }
  }
}

# The one identity dbt runs as in every BigQuery environment.
resource "google_service_account" "main" {
  project      = var.project_id
  account_id   = var.service_account_id
  display_name = "dbt runner"
  description  = "Runs dbt (Prefect flow pipeline-dbt-complet). Writes only to the datasets of the BigQuery environments; managed by Terraform."

  lifecycle {
    precondition {
      condition     = length(local.unknown_adapters) == 0
      error_message = "Unknown adapter in ${local.environments_file}: ${jsonencode(local.unknown_adapters)}. Use duckdb or bigquery."
    }
  }
}

# roles/bigquery.dataEditor, on each environment's own dataset only: dbt creates, replaces and
# drops the tables and views of its models, seeds and snapshots and reads them back (tests, docs).
# Granted per dataset, not on the project, so the account can neither read nor change any other
# dataset. It needs no dataset-creation right: Terraform creates the datasets, and the dbt project
# configures no custom schema (which would create datasets of its own).
resource "google_bigquery_dataset_iam_member" "main" {
  for_each = local.bigquery_environments

  project    = google_bigquery_dataset.main[each.key].project
  dataset_id = google_bigquery_dataset.main[each.key].dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.main.email}"
}

# roles/bigquery.jobUser, on each project an environment runs in: every dbt statement is a
# BigQuery query job, and creating jobs (bigquery.jobs.create) can only be granted on a project.
# The role grants no access to any data; what a job can read or write still depends on the
# dataset roles above. This is the only project-level role the account gets.
resource "google_project_iam_member" "main" {
  for_each = local.job_projects

  project = each.value
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.main.email}"
}

# Optional: a JSON key created by Terraform. Its private key is stored in the Terraform state;
# off by default (see var.create_service_account_key and the README for gcloud instead).
resource "google_service_account_key" "main" {
  count = var.create_service_account_key ? 1 : 0

  service_account_id = google_service_account.main.name
}
