"""What connects the SDK to the code and tools around it, apart from the data path:

* ``observe`` — ``client.observe(...)``: time an LLM call and track it (a context manager and a decorator);
* ``usage``   — reading tokens, finish reason and text from OpenAI and Anthropic responses;
* ``otel``    — the trace and span ids of the current OpenTelemetry span, for events;
* ``metrics`` — ``stats()`` exported to Prometheus and OpenTelemetry metrics.

None of them imports its third-party package until it is used: importing sentinel_durable
never imports OpenTelemetry, Prometheus, OpenAI or Anthropic.
"""
