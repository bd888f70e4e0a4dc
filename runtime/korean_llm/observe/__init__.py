"""What a running stage tells the outside: Prometheus metrics, the local runner's event feed, experiment tracking."""
