"""The model server: MLflow-compatible scoring, model slots, micro-batching and metrics."""
