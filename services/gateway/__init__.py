"""The REST gateway: HTTP/JSON in front of every gRPC service, built from their google.api.http rules.

Modules, one concept each:

- `settings`: `CB_GATEWAY_…` and where each backend service listens (`CB_<NAME>_ADDR`).
- `descriptors`: a backend's protobuf descriptors, read by server reflection (or from the installed
  generated code while the backend is down), and the proto comments.
- `routes`: HttpRule path templates and the route table that matches a request to an RPC.
- `transcode`: HTTP request → protobuf request, protobuf response → JSON (the proto3 JSON mapping).
- `backends`: channels to the services, calling an RPC generically, refreshing the routes.
- `errors`: gRPC status → HTTP status and a `google.rpc.Status` JSON body.
- `auth`, `ratelimit`: API keys and HTTP Basic with bcrypt hashes; a token bucket per client.
- `sse`: server-streaming RPCs as Server-Sent Events.
- `openapi`, `docs`: one OpenAPI 3 document from all services, and an offline docs page.
- `app`, `server`, `launch`: the Starlette app, the `cb-gateway` process, starting it as a child.
"""
