terraform {
  # 1.5 brings the `check` block used in main.tf (preconditions and nullable variables are older).
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # The resources and arguments used here are stable across 5.x to 7.x; a next major version
      # may change them, so it is excluded until tested.
      version = ">= 5.39, < 8"
    }
  }
}
