"""Where the private halves of deploy keys are delivered: Kubernetes Secrets, GitHub Actions
secrets (beside the local files of ``slotkeeper.keys``)."""
