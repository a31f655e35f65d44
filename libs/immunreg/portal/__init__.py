"""The citizens' portal (`immunreg portal`): a static web client, no server logic of its own.

The pages (static/, plain HTML, CSS and JavaScript, no build step) call the services'
APIs directly from the browser with the citizen's own token, so the services need CORS
for this origin (`CORS_ORIGINS`, by default the local portal's). This server only hands
out the files and `config.json`: where each service is (`<SERVICE>_PUBLIC_URL`, by
default the local one) and the reference lists the forms offer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from immunreg.config import service_port, setting
from immunreg.reference.geography import municipalities
from immunreg.reference.health import conditions, priority_groups
from immunreg.reference.vaccines import vaccine_catalog

STATIC = Path(__file__).with_name("static")
# The services the pages call, in the order the page needs them.
SERVICES = ("registration", "booking", "administration", "certificates")


def service_urls() -> dict[str, str]:
    """Each service's address as a browser reaches it: `<SERVICE>_PUBLIC_URL` (behind an
    ingress in production), else the local one."""
    return {
        name: (setting(f"{name.upper()}_PUBLIC_URL") or f"http://127.0.0.1:{service_port(name)}")
        for name in SERVICES
    }


def page_config(urls: Mapping[str, str]) -> dict[str, object]:
    """What the page needs besides the APIs: the services' addresses and reference lists."""
    return {
        "services": dict(urls),
        "products": [
            {"code": p.product_code, "name": p.name} for p in vaccine_catalog().products.values()
        ],
        "municipalities": sorted(
            ({"code": m.code, "name": m.name} for m in municipalities().values()),
            key=lambda m: m["name"],
        ),
        "priority_groups": [
            {"code": g.code, "name": g.name}
            for g in sorted(priority_groups().values(), key=lambda g: g.rank)
        ],
        "conditions": [{"code": c.code, "name": c.name} for c in conditions().values()],
        "timezone": "Europe/Belgrade",
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(urls: Mapping[str, str]) -> dict[str, str]:
    """Scripts only from here, calls only to the services, no framing: a page that holds a
    token is not to run anyone else's code."""
    services = " ".join(sorted({_origin(u) for u in urls.values()}))
    return {
        "Content-Security-Policy": (
            "default-src 'self'; "
            f"connect-src 'self' {services}; "
            "img-src 'self' blob: data:; "
            "style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def create_portal(urls: Mapping[str, str] | None = None) -> web.Application:
    """The portal's application: the static pages and their `config.json`."""
    chosen = dict(urls) if urls is not None else service_urls()
    config = page_config(chosen)
    headers = security_headers(chosen)

    @web.middleware
    async def secure(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(headers)
        return response

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def page_config_route(request: web.Request) -> web.StreamResponse:
        return web.json_response(config, headers={"Cache-Control": "no-cache"})

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    app = web.Application(middlewares=[secure])
    app.router.add_get("/", index)
    app.router.add_get("/config.json", page_config_route)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_static("/static/", STATIC)
    return app
