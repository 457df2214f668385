"""The docs page at /docs: Swagger UI from the `swagger-ui-bundle` package, so it works offline."""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def assets_dir() -> Path | None:
    """Swagger UI's files, when the package is installed."""
    try:
        import swagger_ui_bundle  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").exists() else None


def page(title: str, spec_url: str) -> str:
    t, spec = html.escape(title), html.escape(spec_url, quote=True)
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{t}</title>
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script src="{ASSETS}/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{spec}", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout", validatorUrl: null
    }});
  </script>
</body>
</html>
"""


_FALLBACK = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t}</title></head>
<body><h1>{t}</h1><p>Swagger UI is not installed here (<code>pip install swagger-ui-bundle</code>).
The API is described by <a href="{spec}">{spec}</a>.</p></body></html>
"""


def routes(title: str, spec_url: str = "/openapi.json") -> list[Route | Mount]:
    """/docs, and its assets when the package is there."""
    directory = assets_dir()

    async def docs(request: Request) -> Response:
        if directory is None:
            return HTMLResponse(_FALLBACK.format(t=html.escape(title), spec=html.escape(spec_url)))
        return HTMLResponse(page(title, spec_url))

    out: list[Route | Mount] = [Route("/docs", docs, methods=["GET"])]
    if directory is not None:
        out.append(Mount(ASSETS, app=StaticFiles(directory=directory), name="docs-assets"))
    return out
