"""OpenTelemetry traces, exported only when the standard variables ask for it.

`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set: spans go to
that collector over OTLP/HTTP through a batch processor; the exporter reads the other
standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, ...), and
`OTEL_SERVICE_NAME` names the service (default `parley`). Unset: no tracer provider, no
spans, no cost beyond a `None` check. Tests inject their own provider (an in-memory
exporter) through `create_app(tracer_provider=...)`.

Spans: `HTTP <method> <route>` per request (`app.api.request_log`), `parley.run` per run,
`chat <model>` per provider call with the GenAI semantic-convention attributes, and
`parley.store <operation>` (and `parley.tool <name>` through `RunTelemetry.tool_call`)
inside the run (`app.manager.telemetry`).
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracer_provider_from_env(environ: Mapping[str, str]) -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP when an endpoint variable is set, else None.
    Nothing connects until the first batch is exported."""
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "parley"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
