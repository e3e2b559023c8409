"""The Kubernetes backend (issue 19): an environment is a namespace of cluster objects (docs/kubernetes.md)."""
