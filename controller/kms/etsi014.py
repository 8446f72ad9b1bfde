"""The ETSI GS QKD 014 v1.1.1 REST server: FastAPI over uvicorn, HTTPS with mutual TLS.

Endpoints (base ``/api/v1/keys``; the slave calls ``dec_keys`` with the *master's* SAE ID in the
path, following the spec's Tables 2 and 7 over its §6.4 example):

- ``GET  {slave_SAE_ID}/status``
- ``GET|POST {slave_SAE_ID}/enc_keys`` (GET: only ``number`` and ``size`` as query)
- ``GET|POST {master_SAE_ID}/dec_keys`` (GET: exactly one ``key_ID``)

The calling SAE is the subject CN of its client certificate.  uvicorn does not put the peer
certificate in the ASGI scope, so :class:`TLSH11Protocol` (uvicorn's h11 protocol, subclassed)
adds the ASGI TLS extension, ``scope["extensions"]["tls"]["client_cert_chain"]``, and
:class:`SAEIdentityMiddleware` reads it; any ASGI server that implements that extension works the same.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from .kme import KME, ApiError
from .pki import PKIError, check_server_files, load_cert, sae_id_of

logger = logging.getLogger(__name__)
SAE_SCOPE_KEY = "qkdnode.sae_id"


# -- the SAE identity from the TLS layer ----------------------------------------------------------

class TLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that adds the ASGI TLS extension (client certificate) to each scope."""

    def connection_made(self, transport):  # type: ignore[override]
        super().connection_made(transport)
        tls = None
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            chain = []
            if der:
                chain.append(ssl.DER_cert_to_PEM_cert(der))
            tls = {"server_cert": None, "client_cert_chain": chain,
                   "client_cert_name": None, "client_cert_error": None,
                   "tls_version": None, "cipher_suite": None}
        inner = self.app

        async def app_with_tls(scope, receive, send):
            if tls is not None:
                scope.setdefault("extensions", {})
                scope["extensions"] = dict(scope["extensions"] or {}) | {"tls": tls}
            await inner(scope, receive, send)

        self.app = app_with_tls


class SAEIdentityMiddleware:
    """Put the calling SAE's ID (client certificate subject CN) in ``scope["qkdnode.sae_id"]``."""

    def __init__(self, app):
        self.app = app
        self._cache: dict[str, str | None] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            chain = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain") or []
            sae = None
            if chain:
                pem = chain[0]
                if pem not in self._cache:
                    try:
                        self._cache[pem] = sae_id_of(x509.load_pem_x509_certificate(pem.encode()))
                    except ValueError:
                        self._cache[pem] = None
                sae = self._cache[pem]
            scope[SAE_SCOPE_KEY] = sae
        await self.app(scope, receive, send)


# -- the application ----------------------------------------------------------------------------

def _error(exc: ApiError) -> JSONResponse:
    if exc.status == 401:
        logger.info("401: %s", exc.message)
    return JSONResponse(exc.body(), status_code=exc.status)


def _int_param(name: str, raw: str | None):
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", [{name: raw}]) from None


def _only(params, allowed: set[str], form: str):
    extra = sorted(set(params) - allowed)
    if extra:
        raise ApiError(400, f"{form} does not accept {', '.join(extra)}; "
                            f"use POST with a JSON body for other parameters",
                       [{"unsupported": extra}])


async def _json_object(request: Request, what: str) -> dict:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(400, f"the body is not valid JSON; expected a {what} object") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object ({what})")
    return data


KEY_REQUEST_FIELDS = {"number", "size", "additional_slave_SAE_IDs", "extension_mandatory",
                      "extension_optional"}


def create_app(kme: KME) -> FastAPI:
    """Return the ASGI application serving ``kme`` (wrapped to read the SAE identity)."""
    api = FastAPI(title=f"qkdnode KME {kme.config.kme_id} (ETSI GS QKD 014 v1.1.1)",
                  docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _error(exc)

    @api.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        return _error(ApiError(400, "bad request parameters",
                               [{"location": ".".join(map(str, e.get("loc", ()))),
                                 "problem": e.get("msg", "")} for e in exc.errors()]))

    @api.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        status = 400 if exc.status_code in (404, 405) else exc.status_code
        return _error(ApiError(status, f"no such endpoint: {request.method} {request.url.path}; "
                                       f"see ETSI GS QKD 014 §5"))

    def caller(request: Request) -> str:
        return kme.authorise(request.scope.get(SAE_SCOPE_KEY))

    @api.get("/api/v1/keys/{slave_SAE_ID}/status")
    def get_status(slave_SAE_ID: str, request: Request):
        return kme.status(caller(request), slave_SAE_ID)

    @api.get("/api/v1/keys/{slave_SAE_ID}/enc_keys")
    def get_enc_keys(slave_SAE_ID: str, request: Request):
        who, q = caller(request), request.query_params
        _only(q.keys(), {"number", "size"}, "GET enc_keys")
        return kme.enc_keys(who, slave_SAE_ID, _int_param("number", q.get("number")),
                            _int_param("size", q.get("size")))

    @api.post("/api/v1/keys/{slave_SAE_ID}/enc_keys")
    async def post_enc_keys(slave_SAE_ID: str, request: Request):
        who = caller(request)
        body = await _json_object(request, "Key request")
        unknown = sorted(set(body) - KEY_REQUEST_FIELDS)
        if unknown:
            raise ApiError(400, "unknown Key request parameters", [{"unknown": unknown}])
        if body.get("additional_slave_SAE_IDs"):
            raise ApiError(400, "additional_slave_SAE_IDs is not supported (max_SAE_ID_count is 0)",
                           [{"max_SAE_ID_count": 0}])
        if body.get("extension_mandatory"):
            raise ApiError(400, "not all extension_mandatory parameters are supported",
                           [{"extension_mandatory": body["extension_mandatory"]}])
        # extension_optional: ignored, as the spec allows.
        return await asyncio.to_thread(kme.enc_keys, who, slave_SAE_ID, body.get("number"),
                                       body.get("size"))

    @api.get("/api/v1/keys/{master_SAE_ID}/dec_keys")
    def get_dec_keys(master_SAE_ID: str, request: Request):
        who, q = caller(request), request.query_params
        _only(q.keys(), {"key_ID"}, "GET dec_keys")
        ids = q.getlist("key_ID")
        if len(ids) != 1:
            raise ApiError(400, "GET dec_keys takes exactly one key_ID; use POST for several")
        return kme.dec_keys(who, master_SAE_ID, ids)

    @api.post("/api/v1/keys/{master_SAE_ID}/dec_keys")
    async def post_dec_keys(master_SAE_ID: str, request: Request):
        who = caller(request)
        body = await _json_object(request, "Key IDs")
        entries = body.get("key_IDs")
        if not isinstance(entries, list) or not entries or \
                not all(isinstance(e, dict) and isinstance(e.get("key_ID"), str) for e in entries):
            raise ApiError(400, "key_IDs must be a non-empty array of {\"key_ID\": UUID} objects")
        return await asyncio.to_thread(kme.dec_keys, who, master_SAE_ID,
                                       [e["key_ID"] for e in entries])

    return SAEIdentityMiddleware(api)


# -- serving --------------------------------------------------------------------------------------

@dataclass
class TLSFiles:
    """A KME's server certificate and key, and the CA its SAEs' client certificates come from."""

    cert: Path
    key: Path
    ca: Path


class KMEServer:
    """Serve a KME over HTTPS with mutual TLS in a background thread (``with`` or start/stop)."""

    def __init__(self, kme: KME, tls: TLSFiles, host: str = "127.0.0.1", port: int = 0):
        import uvicorn
        try:
            check_server_files(tls.cert, tls.key, tls.ca)
        except PKIError as exc:
            raise PKIError(f"KME {kme.config.kme_id} cannot serve: {exc}") from None
        self.kme = kme
        self.host = host
        self.config = uvicorn.Config(
            create_app(kme), host=host, port=port, http=TLSH11Protocol, lifespan="off",
            ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key), ssl_ca_certs=str(tls.ca),
            ssl_cert_reqs=ssl.CERT_REQUIRED, log_level="warning", access_log=False,
            timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """Return the bound TCP port."""
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """Return the base URL of the API (``https://HOST:PORT/api/v1/keys``)."""
        return f"https://{self.host}:{self.port}/api/v1/keys"

    def start(self, timeout: float = 10.0) -> "KMEServer":
        """Start serving; return once the socket listens."""
        self._thread = threading.Thread(target=self.server.run, name=f"kme-{self.kme.config.kme_id}",
                                        daemon=True)
        self._thread.start()
        done = threading.Event()
        for _ in range(int(timeout / 0.01)):
            if self.server.started or not self._thread.is_alive():
                break
            done.wait(0.01)
        if not self.server.started:
            raise RuntimeError(f"KME {self.kme.config.kme_id} did not start on "
                               f"{self.host}:{self.config.port}: is the port in use? Choose "
                               f"another, or 0 for a free one (uvicorn's log above says more).")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def client_ssl_context(ca: str | Path, cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """Return an SSL context for an SAE: trusts ``ca``, presents ``cert``/``key``."""
    load_cert(ca, "CA certificate")
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
