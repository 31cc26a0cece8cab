"""The OCI runtime-spec: typed shapes, loading, validation and defaults. Pure: no kernel calls.

Import the submodule you need; this package imports nothing itself, so that ``corral-runc``
pays only for what a command uses:

- ``corral.spec.load``: ``load_bundle(bundle)``, ``load_process(path)``
- ``corral.spec.validate``: ``validate_config(cfg)``, ``validate_process(proc)``
- ``corral.spec.tables``: RLIMITS, CAPABILITIES, ``cap_mask``, ``mount_flags``
- ``corral.spec.signals``: ``parse_signal``, ``signal_name``
- ``corral.spec.defaults``: ``default_spec(rootless)``, what ``runc spec`` writes
- ``corral.spec.features``: ``features()``, what ``runc features`` prints
- ``corral.spec.types``: TypedDicts for type checkers only (imports ``typing``)
"""
