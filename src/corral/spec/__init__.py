"""The OCI runtime-spec: typed shapes, loading, validation and defaults. Pure: no kernel calls."""
