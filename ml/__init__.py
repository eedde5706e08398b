"""Model code shared by the Spark jobs: features, metrics, baselines, BG/NBD, pipelines, gates, registry (docs/models.md)."""
