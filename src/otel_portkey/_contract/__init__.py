"""The Portkey contract, pure: ids (``ids``), one call's request plan and answer (``call``),
metadata rules (``metadata``) and which baggage is trusted (``baggage_trust``). No I/O, no
OpenTelemetry globals; property-tested."""
