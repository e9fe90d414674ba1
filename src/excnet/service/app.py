"""The excnet web service: a FastAPI app serving the page and the versioned REST API.

API (documented at /api/docs, schema at /api/v1/openapi.json):

* POST /api/v1/restore   upload -> restored image (curve in X-Excnet-* headers), or JSON with
                          `?response=json`. Estimates phi unless phi_s/phi_h or params are given.
* POST /api/v1/estimate  upload -> phi and the curve as JSON; `?preview=N` adds a preview of at
                          most N pixels a side plus its base layer, so a page can apply any curve
                          itself, instantly.
* POST /api/v1/apply     upload + given curve -> restored image (no estimation).
* GET  /api/v1/health    liveness: status, pool load and limits (open without a token).
* GET  /api/v1/ready     readiness: 503 while shutting down (open without a token).
* GET  /metrics          Prometheus text (metrics.py).

With tokens set (`Settings.tokens`), every other /api/v1 call needs `Authorization: Bearer`
(auth.py). Each request gets one log line and its metrics (logs.py, context.py).

The curve is `excnet.Curve` everywhere: f(x; s*phi_s, h*s*phi_h) with strength s and highlight
scale h, and its JSON is `Curve.to_dict()`, the file that `excnet restore --params` reads.
Uploads are checked by decoding, against `Settings.max_upload_bytes` and `max_pixels`; every
refusal is a 4xx (or 503 when busy) with a JSON body {"error": {"code", "message"}}. Uploads are
held in memory (the multipart parser spools large ones to a temp file it deletes).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..adapt import hold
from ..curve import Curve
from ..denoise import DEFAULT_MODE as DEFAULT_DENOISE
from ..imageio import FORMATS, ImageError, ImageFile, decode_image, encode_image
from ..imageio.formats import default_output_format
from ..manifest import finite_or_none
from ..pipeline import DEFAULT_SOLVER, SOLVERS, Restorer
from ..tone import IMPROVED, BothGiven, given_curve
from . import context
from .auth import BearerAuth, Tokens
from .errors import ApiError, DecodeError, error_response, refuse
from .logs import RequestLog
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .workers import (
    CLIENT_GONE,
    SHUTTING_DOWN,
    Cancelled,
    JobTiming,
    RestorerFactory,
    WorkerPool,
)

API = "/api/v1"
STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff",
               "WEBP": "image/webp", "HEIC": "image/heic"}
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "HEIC": ".heic"}
FORMAT_NAMES = {**{f: f for f in FORMATS}, "JPG": "JPEG", "TIF": "TIFF", "HEIF": "HEIC"}
# Multipart framing and the small form fields around the file.
FORM_OVERHEAD = 64 * 1024
WORK_ENDPOINTS = ("restore", "estimate", "apply")
#: An over-size upload is read (and dropped) up to this many times the limit before the 413,
#: so that the client, still sending, gets the answer and not a reset connection.
DRAIN = 4
METRICS = "/metrics"
#: API paths that need no token: liveness, readiness and the schema the docs page reads.
OPEN_PATHS = frozenset(f"{API}/{p}" for p in ("health", "ready", "openapi.json"))
#: Metric labels: these paths as they are, everything else as "other" (bounded cardinality).
ENDPOINTS = frozenset({*(f"{API}/{p}" for p in WORK_ENDPOINTS), *OPEN_PATHS, METRICS, "/"})
#: Status of a request whose job was cancelled, by reason.
CANCELLED_STATUS = {CLIENT_GONE[0]: 499, SHUTTING_DOWN[0]: 503}


@dataclass(frozen=True)
class Settings:
    """Service limits and the default estimation settings (those of the CLI)."""

    max_upload_bytes: int = 100 * 1024 * 1024  # a camera RAW file
    max_pixels: int = 60_000_000
    workers: int = 2
    queue: int = 8
    solver: str = DEFAULT_SOLVER
    arch: str = "small"
    max_iters: int = 1000
    seed: int = 0
    #: Seconds an upload may take to arrive (then 408): stalled clients do not hold a slot.
    request_timeout: float = 60.0
    #: Bearer tokens for /api/v1 (empty: no authentication).
    tokens: Tokens = Tokens()
    #: Bearer tokens for /metrics (None: the API tokens).
    metrics_tokens: Tokens | None = None

    def restorer(self, solver: str) -> Restorer:
        return Restorer(solver, arch=self.arch, max_iters=self.max_iters, seed=self.seed)


# --------------------------------------------------------------------------- admission


class Admission:
    """ASGI middleware for the work endpoints: body size limit first, then a pool slot.

    The body is read here (at most `max_body` bytes, within `request_timeout` seconds, else
    408) while holding the slot, so that neither oversized, surplus nor stalled uploads hold
    memory or a slot beyond the pool's bound. Then it watches the connection: a client that
    goes away cancels its job (see `WorkerPool.run`), which frees the worker.
    """

    def __init__(self, app, pool: WorkerPool, max_body: int, paths: frozenset[str],
                 request_timeout: float) -> None:
        self.app, self.pool, self.max_body, self.paths = app, pool, max_body, paths
        self.request_timeout = request_timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        if not self.pool.try_admit():
            await self._busy(scope, receive, send)
            return
        watcher = None
        try:
            try:
                async with asyncio.timeout(self.request_timeout):
                    body = await self._read_body(receive)
            except TimeoutError:
                await error_response(
                    408, "timeout", f"the upload did not arrive within {self.request_timeout:g} s",
                    {"Connection": "close"})(scope, receive, send)
                return
            if body is None:
                await self._too_large(scope, receive, send)
            elif body is GONE:
                await error_response(499, CLIENT_GONE[0], CLIENT_GONE[1])(scope, receive, send)
            else:
                watcher = asyncio.ensure_future(_watch(receive))
                await self.app(scope, _replay(body, watcher), send)
        finally:
            if watcher is not None:
                watcher.cancel()
            self.pool.release()

    async def _read_body(self, receive) -> bytes | object | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return GONE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _busy(self, scope, receive, send) -> None:
        if self.pool.draining:
            response = error_response(503, SHUTTING_DOWN[0], SHUTTING_DOWN[1],
                                      {"Connection": "close"})
        else:
            retry = str(self.pool.retry_after())
            response = error_response(503, "busy", f"the server is busy; try again in {retry} s",
                                      {"Retry-After": retry})
        await refuse(response, scope, receive, send, self.max_body, self.request_timeout)

    async def _too_large(self, scope, receive, send) -> None:
        """413, once the rest of the upload is read and discarded (up to `DRAIN` times the
        limit: beyond, the connection is simply closed)."""
        limit = self.max_body - FORM_OVERHEAD
        response = error_response(
            413, "too_large", f"the upload is larger than the limit of {limit} bytes",
            {"Connection": "close"})
        await refuse(response, scope, receive, send, DRAIN * self.max_body,
                     self.request_timeout)


#: What `Admission._read_body` returns when the client went away mid-upload.
GONE = object()


async def _watch(receive) -> dict:
    """Wait for the next message (the disconnect); cancel the current request's job on it."""
    message = await receive()
    request = context.current()
    if message["type"] == "http.disconnect" and request is not None:
        request.cancel.cancel(*CLIENT_GONE)
    return message


def _replay(body: bytes, watcher: asyncio.Future):
    """The receive channel the app sees: the body read already, then what `watcher` got."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await asyncio.shield(watcher)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


# --------------------------------------------------------------------------- jobs (worker threads)


@dataclass(frozen=True)
class Job:
    """What one request asks for: upload, solver, curve controls, output."""

    data: bytes
    name: str
    solver: str
    strength: float | None = None
    highlight_scale: float | None = None
    given: Curve | None = None
    format: str | None = None
    quality: int = 95
    preview: int = 0
    denoise: str | None = None
    adapt: str | None = None  # "on" / "off"; None: the restorer's default (on)

    def curve_with_controls(self, phi_s: float, phi_h: float, base: Curve | None = None) -> Curve:
        """Curve with this request's strength / highlight scale over `base`'s (or the defaults)."""
        base = base or IMPROVED.curve(phi_s, phi_h)
        return replace(base, phi_s=phi_s, phi_h=phi_h,
                       strength=base.strength if self.strength is None else self.strength,
                       highlight_scale=base.highlight_scale if self.highlight_scale is None
                       else self.highlight_scale)


def _decode(job: Job, settings: Settings) -> ImageFile:
    try:
        return decode_image(job.data, name=job.name, max_pixels=settings.max_pixels,
                            max_bytes=settings.max_upload_bytes)
    except ImageError as exc:
        raise _image_error(str(exc)) from None


def _image_error(message: str) -> DecodeError:
    """Map a decoder message to a status: too big 413, not a supported image 415, else 422."""
    if "exceeds the" in message:
        code = "too_many_pixels" if "pixels" in message else "too_large"
        return DecodeError(413, code, message)
    if "not an image" in message or "unsupported image format" in message:
        return DecodeError(415, "unsupported_type",
                           f"{message}. Supported: {', '.join(FORMATS)}, camera RAW")
    if "file is empty" in message:
        return DecodeError(400, "empty_file", message)
    return DecodeError(422, "bad_image", message)


def restore_job(pool: WorkerPool, settings: Settings, job: Job) -> dict:
    """Decode, restore (estimating unless a curve is given) and encode: runs on a worker.

    Between the stages it checks whether the request was cancelled (`pool.checkpoint`).
    """
    t0 = time.perf_counter()
    img = _decode(job, settings)
    pool.stage("decode", time.perf_counter() - t0)
    pool.checkpoint()
    restorer = pool.restorer(job.solver)
    restorer.denoise = job.denoise or DEFAULT_DENOISE  # this worker's own restorer: safe
    restorer.adapt = job.adapt != "off"
    if job.given is not None:
        res = restorer.restore(img.pixels, job.given)
    else:
        # The restorer belongs to this worker thread alone: setting its controls is safe.
        curve = job.curve_with_controls(0.0, 0.0)
        restorer.strength, restorer.highlight_scale = curve.strength, curve.highlight_scale
        res = restorer.restore(img.pixels)
    for stage, seconds in res.seconds.items():
        pool.stage(stage, seconds)
    pool.checkpoint()
    fmt = job.format or default_output_format(img.format)
    t1 = time.perf_counter()
    try:
        body = encode_image(res.image, fmt, like=img, quality=job.quality)
    except ImageError as exc:
        raise ApiError(422, "cannot_encode", f"{job.name}: {exc}") from None
    pool.stage("encode", time.perf_counter() - t1)
    return {"body": body, "format": fmt, "curve": res.curve, "iterations": res.iterations,
            "loss": res.loss, "converged": res.converged, "width": img.width,
            "height": img.height, "seconds": res.seconds, "denoise": res.denoise,
            "needs_correction": res.needs_correction, "mean_gain": res.mean_gain}


def estimate_job(pool: WorkerPool, settings: Settings, job: Job) -> dict:
    """Decode and estimate phi; with job.preview, also a preview and its base layer."""
    t0 = time.perf_counter()
    img = _decode(job, settings)
    t1 = time.perf_counter()
    pool.stage("decode", t1 - t0)
    pool.checkpoint()
    restorer = pool.restorer(job.solver)
    restorer.adapt = job.adapt != "off"
    (decided, est), base = restorer.estimate_curve(img.pixels)
    pool.stage("estimate", time.perf_counter() - t1)
    # the decision, over the defaults (not this worker's controls from an earlier request),
    # with the highlights held as `Restorer.curve_for` holds them when it restores
    scale = IMPROVED.highlight_scale * (hold(decided.amount) if restorer.adapt else 1.0)
    curve = job.curve_with_controls(est.phi_s, est.phi_h, replace(
        IMPROVED.curve(est.phi_s, est.phi_h, highlight_scale=scale),
        exposure=decided.exposure, amount=decided.amount))
    out = {"name": job.name, "width": img.width, "height": img.height, "format": img.format,
           "solver": job.solver, "curve": curve.to_dict(), "applied": _applied(curve),
           "iterations": est.iterations, "loss": finite_or_none(est.loss),
           "converged": est.converged, "seconds": est.seconds, "preview": None}
    if job.preview:
        pool.checkpoint()
        t2 = time.perf_counter()
        out["preview"] = preview(img.pixels, base, job.preview)
        pool.stage("preview", time.perf_counter() - t2)
    return out


def preview(pixels: np.ndarray, base: np.ndarray, size: int) -> dict:
    """A downscaled 8-bit RGB copy (JPEG) and its base layer (8-bit grey PNG) as data URLs.

    The base layer is that of the full image, downscaled; applying gain(base) to the preview
    approximates the downscaled full-resolution result, so a page can retune the curve alone.
    """
    h, w = pixels.shape[:2]
    scale = min(1.0, size / max(h, w))
    dims = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgb = pixels
    if rgb.dtype == np.uint16:
        rgb = ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    elif rgb.shape[2] in (1, 2):
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    rgb = np.ascontiguousarray(rgb[..., :3])
    small = cv2.resize(rgb, dims, interpolation=cv2.INTER_AREA)
    small_base = cv2.resize(base, dims, interpolation=cv2.INTER_AREA)
    base8 = np.clip(np.rint(small_base), 0, 255).astype(np.uint8)
    return {"width": dims[0], "height": dims[1],
            "image": _data_url(encode_image(small, "JPEG", quality=90), "image/jpeg"),
            "base": _data_url(encode_image(base8, "PNG"), "image/png")}


def _data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _applied(curve: Curve) -> dict[str, float]:
    a_s, a_h = curve.applied
    return {"phi_s": a_s, "phi_h": a_h, "second_phi_s": curve.second}


def _output_name(upload: str, fmt: str) -> str:
    stem = Path(upload.replace("\\", "/")).stem or "image"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:100]
    return f"{stem}.excnet{SUFFIXES[fmt]}"


def image_or_json(result: dict, name: str, response: str) -> Response:
    """The restored image with the curve in headers, or all of it as JSON (image in base64)."""
    curve: Curve = result["curve"]
    fmt = result["format"]
    filename = _output_name(name, fmt)
    meta = {"curve": curve.to_dict(), "applied": _applied(curve),
            "iterations": result["iterations"], "loss": finite_or_none(result["loss"]),
            "converged": result["converged"], "width": result["width"],
            "height": result["height"], "format": fmt, "media_type": MEDIA_TYPES[fmt],
            "filename": filename, "denoise": result["denoise"],
            # the four fields of the CLI's --json records and the batch manifest
            "needs_correction": result["needs_correction"], "mean_gain": result["mean_gain"],
            "exposure": curve.exposure, "amount": curve.amount}
    if response == "json":
        meta["image_base64"] = base64.b64encode(result["body"]).decode("ascii")
        return JSONResponse(meta)
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Excnet-Phi-S": repr(curve.phi_s),
        "X-Excnet-Phi-H": repr(curve.phi_h),
        "X-Excnet-Strength": repr(curve.strength),
        "X-Excnet-Highlight-Scale": repr(curve.highlight_scale),
        "X-Excnet-Iterations": str(result["iterations"]),
        "X-Excnet-Converged": "true" if result["converged"] else "false",
        "X-Excnet-Curve": json.dumps(curve.to_dict()),
        "X-Excnet-Needs-Correction": "true" if result["needs_correction"] else "false",
        "X-Excnet-Mean-Gain": repr(result["mean_gain"]),
    }
    return Response(result["body"], media_type=MEDIA_TYPES[fmt], headers=headers)


# --------------------------------------------------------------------------- request parsing


def _given_curve(params: str | None, phi_s: float | None, phi_h: float | None,
                 exposure: float | None = None, amount: float | None = None) -> Curve | None:
    """The curve fixed by the request (`params` JSON, or phi_s/phi_h with the recorded
    adaptive exposure), by the CLI's rule; `amount` replaces the fixed curve's."""

    def load() -> Curve:
        data = json.loads(params)
        if not isinstance(data, dict):
            raise ValueError("params must be a JSON object")
        return Curve.from_dict(data)

    try:
        return given_curve(None if params is None else load, phi_s, phi_h, IMPROVED, exposure,
                           amount)
    except BothGiven:
        raise ApiError(422, "bad_request",
                       "give either params or phi_s/phi_h (and exposure), not both") from None
    except ValueError as exc:  # json.JSONDecodeError is one too
        raise ApiError(422, "bad_request", f"bad curve parameters: {exc}") from None


def _format(name: str | None) -> str | None:
    if name is None or not name.strip():
        return None
    fmt = FORMAT_NAMES.get(name.strip().upper().lstrip("."))
    if fmt is None:
        raise ApiError(422, "bad_request",
                       f"unknown output format {name!r}; choose from {', '.join(FORMATS)}")
    return fmt


async def _read_upload(file: UploadFile, settings: Settings) -> tuple[bytes, str]:
    name = Path((file.filename or "upload").replace("\\", "/")).name or "upload"
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"{name}: file is larger than the limit of "
                                         f"{settings.max_upload_bytes} bytes")
    if not data:
        raise ApiError(400, "empty_file", f"{name}: file is empty")
    return data, name


#: Request bodies that can carry form fields; anything else cannot carry the photo.
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def known_fields(request: Request) -> None:
    """Refuse what the endpoint would silently ignore or misread: a body that is not a form,
    a form field or query parameter it does not take (a misspelt or misplaced option), a
    missing photo, text instead of a file, or several photos. Runs before the fields are
    validated, so that the message names the real mistake."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in FORM_TYPES:
        raise ApiError(415, "not_multipart",
                       f"send the photo as multipart/form-data in the field 'file' "
                       f"(curl -F file=@photo.jpg), not as {kind or 'a body without a type'}")
    dependant = request.scope["route"].dependant
    fields = [f.alias for f in dependant.body_params]
    params = [f.alias for f in dependant.query_params]
    form = await request.form()  # parsed once: FastAPI reads the same parsed form
    endpoint = request.url.path.rsplit("/", 1)[-1]
    for given, known, where in ((form.keys(), fields, "form field"),
                                (request.query_params.keys(), params, "query parameter")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ApiError(422, "bad_request",
                           f"unknown {where} {', '.join(map(repr, unknown))}: {endpoint} takes "
                           f"the form fields {', '.join(fields)} and the query parameters "
                           f"{', '.join(params)}")
    files = form.getlist("file")
    if not files:
        raise ApiError(422, "bad_request",
                       "no photo: send it in the form field 'file' (curl -F file=@photo.jpg)")
    if len(files) > 1:
        raise ApiError(422, "bad_request", f"one photo per request, not {len(files)}")
    if isinstance(files[0], str):
        raise ApiError(422, "bad_request",
                       "the field 'file' must be a file upload (curl -F file=@photo.jpg), "
                       "not text")


def _control(name: str, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ApiError(422, "bad_request", f"{name} must be a finite number")
    return value


# --------------------------------------------------------------------------- the app

FileField = Annotated[UploadFile, File(description="the photo (JPEG, PNG, TIFF, WebP, HEIC)")]
SolverField = Annotated[Literal["excnet", "direct"] | None,
                        Form(description="how phi is estimated (default: the server's)")]
StrengthField = Annotated[float | None, Form(description="strength s: scales both phi (1)")]
HighlightField = Annotated[float | None, Form(
    description=f"highlight scale h: fraction of phi_h applied ({IMPROVED.highlight_scale})")]
PhiField = Annotated[float | None, Form(description="use this phi, skip estimation")]
ExposureField = Annotated[float | None, Form(
    description="with phi_s/phi_h: the adaptive exposure in EV to apply, as recorded (0)")]
AmountField = Annotated[float | None, Form(
    description="with phi_s/phi_h or params: the adaptive fraction of phi, as recorded (1)")]
ParamsField = Annotated[str | None, Form(
    description="a saved curve as JSON (Curve.to_dict(), as `excnet estimate --save` writes)")]
FormatField = Annotated[str | None, Form(
    description="output format: JPEG, PNG, TIFF, WEBP or HEIC (default: the input's)")]
QualityField = Annotated[int, Form(ge=1, le=100, description="JPEG/WebP/HEIC quality")]
DenoiseField = Annotated[Literal["off", "auto", "strong"] | None, Form(
    description=f"clean the noise that lifting amplifies (default {DEFAULT_DENOISE})")]
AdaptField = Annotated[Literal["on", "off"] | None, Form(
    description="adaptive default: exposure for dark frames, as much of the curve as the photo "
                "looks back-lit, good and low-key photos left alone (default on)")]
ResponseQuery = Annotated[Literal["image", "json"], Query(
    description="image: the file, curve in X-Excnet-* headers; json: all as JSON, base64 image")]


def _endpoint(path: str) -> str:
    """The metrics label of a request path."""
    if path in ENDPOINTS:
        return path
    return "/static" if path.startswith("/static/") else "other"


def create_app(settings: Settings | None = None,
               make_restorer: RestorerFactory | None = None) -> FastAPI:
    """Build the app. `make_restorer(solver)` builds each worker's warm restorer."""
    settings = settings or Settings()
    if settings.solver not in SOLVERS:
        raise ValueError(f"unknown solver {settings.solver!r}")
    pool = WorkerPool(make_restorer or settings.restorer, settings.workers, settings.queue)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.shutdown()

    app = FastAPI(
        title="excnet", version=__version__, lifespan=lifespan,
        description="Restore back-lit photos with ExCNet. The curve applied is "
                    "f(x; s*phi_s, h*s*phi_h); its JSON is the file `excnet restore --params` "
                    "reads.",
        docs_url="/api/docs", redoc_url=None, openapi_url=f"{API}/openapi.json")
    metrics = Metrics(pool)
    app.state.pool, app.state.settings, app.state.metrics = pool, settings, metrics
    # Outermost last: the request log sees everything, auth runs before any upload is read.
    app.add_middleware(Admission, pool=pool,
                       max_body=settings.max_upload_bytes + FORM_OVERHEAD,
                       paths=frozenset(f"{API}/{p}" for p in WORK_ENDPOINTS),
                       request_timeout=settings.request_timeout)
    app.add_middleware(BearerAuth, api=settings.tokens,
                       metrics=settings.tokens if settings.metrics_tokens is None
                       else settings.metrics_tokens,
                       api_prefix=f"{API}/", metrics_path=METRICS, open_paths=OPEN_PATHS,
                       max_body=settings.max_upload_bytes + FORM_OVERHEAD,
                       request_timeout=settings.request_timeout)
    app.add_middleware(RequestLog,
                       observe=lambda r: metrics.observe_request(_endpoint(r.path), r))

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg"))
        return error_response(422, "bad_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    def job(data: bytes, name: str, solver: str | None, **fields) -> Job:
        return Job(data, name, solver or settings.solver, **fields)

    async def run(fn, j: Job) -> dict:
        """Run a job on the pool; note its stages, size and phi for the log and metrics."""
        request = context.current()
        timing = JobTiming()
        try:
            result = await pool.run(fn, pool, settings, j, timing=timing,
                                    token=request.cancel if request else None)
        except DecodeError as exc:
            metrics.decode_errors.labels(exc.code).inc()
            raise
        except Cancelled as exc:
            raise ApiError(CANCELLED_STATUS[exc.code], exc.code, exc.reason,
                           {"Connection": "close"}) from None
        except ValueError as exc:
            raise ApiError(422, "bad_request", f"{j.name}: {exc}") from None
        finally:
            if timing.work:
                metrics.observe_job(_endpoint(request.path) if request else "other", timing)
                if request:
                    request.stages.update({"queue": timing.queued, **timing.stages})
        megapixels = result["width"] * result["height"] / 1e6
        curve = result["curve"]
        phi = (curve.phi_s, curve.phi_h) if isinstance(curve, Curve) else (
            curve["phi_s"], curve["phi_h"])
        if request:
            request.megapixels, request.phi = megapixels, phi
        if fn is restore_job:
            metrics.restored(megapixels)
        return result

    @app.post(f"{API}/restore", tags=["restore"], summary="Restore an uploaded photo",
              dependencies=[Depends(known_fields)],
              response_class=Response,
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                               "description": "the restored image (or JSON, see `response`)"}})
    async def restore(file: FileField, solver: SolverField = None,
                      strength: StrengthField = None, highlight_scale: HighlightField = None,
                      phi_s: PhiField = None, phi_h: PhiField = None,
                      exposure: ExposureField = None, amount: AmountField = None,
                      params: ParamsField = None, format: FormatField = None,  # noqa: A002
                      quality: QualityField = 95, denoise: DenoiseField = None,
                      adapt: AdaptField = None, response: ResponseQuery = "image"):
        """Estimates phi (unless phi_s/phi_h or params fix it) and returns the restored image."""
        data, name = await _read_upload(file, settings)
        given = _given_curve(params, _control("phi_s", phi_s), _control("phi_h", phi_h),
                             _control("exposure", exposure), _control("amount", amount))
        j = job(data, name, solver, strength=_control("strength", strength),
                highlight_scale=_control("highlight_scale", highlight_scale),
                format=_format(format), quality=quality, denoise=denoise, adapt=adapt)
        if given is not None:
            j = replace(j, given=j.curve_with_controls(given.phi_s, given.phi_h, given))
        result = await run(restore_job, j)
        return image_or_json(result, name, response)

    @app.post(f"{API}/apply", tags=["restore"], summary="Apply given curve parameters",
              dependencies=[Depends(known_fields)],
              response_class=Response,
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                               "description": "the restored image (or JSON, see `response`)"}})
    async def apply(file: FileField, phi_s: PhiField = None, phi_h: PhiField = None,
                    exposure: ExposureField = None, amount: AmountField = None,
                    params: ParamsField = None, strength: StrengthField = None,
                    highlight_scale: HighlightField = None,
                    format: FormatField = None,  # noqa: A002
                    quality: QualityField = 95, denoise: DenoiseField = None,
                    response: ResponseQuery = "image"):
        """Applies the curve given by phi_s/phi_h or params; no estimation."""
        data, name = await _read_upload(file, settings)
        given = _given_curve(params, _control("phi_s", phi_s), _control("phi_h", phi_h),
                             _control("exposure", exposure), _control("amount", amount))
        if given is None:
            raise ApiError(422, "bad_request", "apply needs phi_s and phi_h, or params")
        j = job(data, name, None, strength=_control("strength", strength),
                highlight_scale=_control("highlight_scale", highlight_scale),
                format=_format(format), quality=quality, denoise=denoise)
        j = replace(j, given=j.curve_with_controls(given.phi_s, given.phi_h, given))
        result = await run(restore_job, j)
        return image_or_json(result, name, response)

    @app.post(f"{API}/estimate", tags=["restore"], summary="Estimate the curve only",
              dependencies=[Depends(known_fields)])
    async def estimate(file: FileField, solver: SolverField = None,
                       strength: StrengthField = None, highlight_scale: HighlightField = None,
                       adapt: AdaptField = None, preview: Annotated[int, Query(
                           ge=0, le=4096,
                           description="also return a preview of at most this many pixels a "
                                       "side and its base layer (0: none)")] = 0) -> dict:
        """Returns phi and the curve (`curve` is the JSON `excnet restore --params` reads)."""
        data, name = await _read_upload(file, settings)
        j = job(data, name, solver, strength=_control("strength", strength),
                highlight_scale=_control("highlight_scale", highlight_scale), preview=preview,
                adapt=adapt)
        return await run(estimate_job, j)

    @app.get(f"{API}/health", tags=["service"], summary="Liveness, status and limits (open)")
    async def health() -> dict:
        return {"status": "ok", "version": __version__, "pool": pool.stats(),
                "auth": bool(settings.tokens),
                "limits": {"max_upload_bytes": settings.max_upload_bytes,
                           "max_pixels": settings.max_pixels},
                "solvers": list(SOLVERS), "default_solver": settings.solver,
                "default_highlight_scale": IMPROVED.highlight_scale}

    @app.get(f"{API}/ready", tags=["service"], summary="Readiness: 503 while shutting down (open)")
    async def ready() -> JSONResponse:
        if pool.draining:
            return error_response(503, SHUTTING_DOWN[0], SHUTTING_DOWN[1])
        return JSONResponse({"status": "ready"})

    @app.get(METRICS, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # Probes and uptime checkers may ask with HEAD: the same status, no body.
    for path, endpoint in ((f"{API}/health", health), (f"{API}/ready", ready), ("/", index)):
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
