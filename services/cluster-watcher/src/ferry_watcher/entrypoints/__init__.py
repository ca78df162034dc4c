"""What drives the watcher: the Kubernetes watch loops."""
