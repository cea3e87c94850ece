variable "project_id" {
  description = "The GCP project that holds the dbt service account. It is also the project of every BigQuery environment that sets neither its own `project` nor `gcp.project` in the environments file."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project_id must be a GCP project id: 6 to 30 lowercase letters, digits or dashes, starting with a letter and not ending with a dash (for example my-data-project)."
  }
}

variable "environments_file" {
  description = "Path to the pipeline's environments file (the single source of truth also read by infrastructure.setup_profiles). null means infrastructure/environments.yaml next to this module, i.e. \"$${path.module}/../environments.yaml\"."
  type        = string
  default     = null

  validation {
    condition     = var.environments_file == null || try(can(regex("\\.ya?ml$", var.environments_file)) && fileexists(var.environments_file), false)
    error_message = "The environments_file must be null (the repository's infrastructure/environments.yaml) or the path of an existing .yaml/.yml file."
  }
}

variable "service_account_id" {
  description = "The account id of the service account dbt runs as; its email is <id>@<project_id>.iam.gserviceaccount.com."
  type        = string
  default     = "dbt-runner"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.service_account_id))
    error_message = "The service_account_id must be 6 to 30 lowercase letters, digits or dashes, starting with a letter and not ending with a dash (for example dbt-runner)."
  }
}

variable "create_service_account_key" {
  description = "Whether Terraform also creates a JSON key for the service account (output service_account_key). WARNING: the private key is then stored unencrypted in the Terraform state, so anyone who can read the state can act as dbt. Prefer false and create the key with `gcloud iam service-accounts keys create` (see README)."
  type        = bool
  default     = false
  nullable    = false
}

variable "dataset_delete_contents_on_destroy" {
  description = "Whether `terraform destroy` (or removing an environment from the file) deletes a dataset that still holds tables. false makes such a destroy fail instead of losing data."
  type        = bool
  default     = false
  nullable    = false
}

variable "extra_labels" {
  description = "Labels added to every dataset, besides the environment's own `labels` (which win on a conflict) and the `dbt-environment` label the module sets."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for key, value in var.extra_labels :
      can(regex("^\\p{Ll}[\\p{Ll}0-9_-]{0,62}$", key)) && can(regex("^[\\p{Ll}0-9_-]{0,63}$", value))
    ])
    error_message = "Each extra_labels key must start with a lowercase letter and, like each value, hold at most 63 lowercase letters, digits, underscores or dashes."
  }

  validation {
    condition     = !contains(keys(var.extra_labels), "dbt-environment")
    error_message = "The extra_labels must not set dbt-environment: the module sets it to each dataset's environment name."
  }
}
