"""The process `devtools.stripe_standin.running()` starts: localstripe's aiohttp app, and a billing portal.

localstripe's own `localstripe --from-scratch` binds every interface and pickles its store to a shared
`/tmp/localstripe.pickle` on each write; this serves the same app on loopback only, starts empty (what
`--from-scratch` means) and keeps the store in memory, so parallel runs never meet.

localstripe has no billing portal, so one is faked here at the HTTP layer (the project's rule where localstripe
cannot produce a case): `POST /v1/billing_portal/sessions` answers a Stripe-shaped `billing_portal.session` for a
customer localstripe knows, and a Stripe `resource_missing` error (HTTP 404) for one it does not; the session's
`url` serves a small HTML page saying it is the development stand-in, with a link back to `return_url`. It is
not Stripe's portal: no invoices or cards are shown. Sessions live in this process's memory.
"""

import html
import secrets
import sys
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from localstripe.errors import UserError
from localstripe.resources import Store, store
from localstripe.server import app, get_post_data

SESSIONS_PATH = "/v1/billing_portal/sessions"
# Where a session's page is served; outside /v1/, as a browser opens it without an API key.
PAGE_PATH = "/billing_portal/sessions/"

_sessions: dict[str, dict[str, Any]] = {}


def _bad_parameter(name: str, code: str, message: str) -> UserError:
    return UserError(400, message, {"code": code, "param": name})


async def create_session(request: web.Request) -> web.Response:
    """POST /v1/billing_portal/sessions with `customer` and `return_url`, as the Stripe SDK sends them."""
    data = await get_post_data(request) or {}
    customer, return_url = data.get("customer"), data.get("return_url")
    if not isinstance(customer, str) or not customer:
        raise _bad_parameter("customer", "parameter_missing", "Missing required param: customer.")
    # Stripe refuses a return_url that is not a URL; here only http(s), since the page links to it.
    if not isinstance(return_url, str) or not return_url.startswith(("http://", "https://")):
        raise _bad_parameter("return_url", "url_invalid", "Not a valid URL")
    if store.get(f"customer:{customer}") is None:
        raise UserError(
            404, f"No such customer: '{customer}'", {"code": "resource_missing", "param": "customer"}
        )
    session_id = f"bps_{secrets.token_hex(12)}"
    session = {
        "id": session_id,
        "object": "billing_portal.session",
        "customer": customer,
        "return_url": return_url,
        "url": f"{request.scheme}://{request.host}{PAGE_PATH}{session_id}",
        "created": int(time.time()),
        "livemode": False,
    }
    _sessions[session_id] = session
    return web.json_response(session)


def _page(session: dict[str, Any]) -> str:
    customer, back = html.escape(session["customer"]), html.escape(session["return_url"], quote=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Billing portal (development stand-in)</title></head>
<body>
<h1>Billing portal: development stand-in</h1>
<p>This is not Stripe. <code>make run</code> without Stripe keys serves this page because localstripe, its Stripe
stand-in, has no customer portal. With <code>STRIPE_SECRET_KEY</code> set, Stripe's portal opens instead.</p>
<p>Customer: <code>{customer}</code></p>
<p><a href="{back}">Return to billing</a></p>
</body></html>
"""


@web.middleware
async def session_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """GET a session's `url`. A middleware ahead of localstripe's, whose authentication refuses any request
    without a secret key outside its own few paths."""
    if request.method != "GET" or not request.path.startswith(PAGE_PATH):
        return await handler(request)
    session = _sessions.get(request.path.removeprefix(PAGE_PATH))
    if session is None:
        raise web.HTTPNotFound(text="No such billing portal session.")
    return web.Response(text=_page(session), content_type="text/html")


def main(port: int) -> None:
    Store.dump_to_disk = lambda self: None
    app.router.add_post(SESSIONS_PATH, create_session)
    app.middlewares.insert(0, session_pages)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
