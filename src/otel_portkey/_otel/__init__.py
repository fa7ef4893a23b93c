"""The OpenTelemetry side of the bridge, in the order one request meets it: ``client_hooks`` (each
HTTP client instrumentation's hooks, thin adapters) → ``propagator`` (no baggage to gateways) →
``bridge`` (the request and response side: the contract's plan carried out) → ``headers`` (the one
reader and writer of header mappings). Around them: ``instrumentor`` (installs it all),
``processor`` (metadata on spans, the caller of each call), ``metadata_context``
(``portkey_metadata``), ``streaming``, ``kept_trace_ids``, ``diagnostics`` (reporting once) and
``sdk_internals`` (the SDK internals read where it has no public API)."""
