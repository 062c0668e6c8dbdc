"""What a running platform tells about itself: traces (OpenTelemetry), metrics (Ray's metrics
API in the Serve replicas, prometheus-client in the ingestion worker) and the gateway's query
log. docs/OBSERVABILITY.md says where each goes and how to view it."""
