"""The VectorIndex port on OpenSearch k-NN: ``settings`` (the typed view of the configuration),
``client`` (one client per configuration, retries), ``queries`` (pure request bodies, golden-tested)
and ``index`` (the adapter). See infra/opensearch/README.md."""
