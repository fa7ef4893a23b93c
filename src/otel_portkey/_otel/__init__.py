"""The OpenTelemetry side of the bridge. One gateway call passes, downward only: ``client_hooks``
(the instrumentations' seams: hooks and the propagator) → ``bridge`` (the call's lifecycle object)
→ ``processor`` (the context: metadata, the calling operation) → ``headers`` (the one reader and
writer of header mappings) → ``_contract.call`` → ``_contract.metadata``. Around them, at install
time or on rare paths: ``instrumentor`` (the installation, and its undo), ``diagnostics`` (reporting
once), ``kept_trace_ids`` and ``sdk_internals`` (the SDK internals read where it has no public API)."""
