"""The excnet web service: a FastAPI app serving the page and the versioned REST API.

API (documented at /api/docs, schema at /api/v1/openapi.json):

* POST /api/v1/restore   upload -> restored image (curve in X-Excnet-* headers), or JSON with
                          `?response=json`. Estimates phi unless phi_s/phi_h or params are given.
* POST /api/v1/estimate  upload -> phi and the curve as JSON; `?preview=N` adds a preview of at
                          most N pixels a side plus its base layer, so a page can apply any curve
                          itself, instantly.
* POST /api/v1/apply     upload + given curve -> restored image (no estimation).
* GET  /api/v1/health    status, pool load and limits.

The curve is `excnet.Curve` everywhere: f(x; s*phi_s, h*s*phi_h) with strength s and highlight
scale h, and its JSON is `Curve.to_dict()`, the file that `excnet restore --params` reads.
Uploads are checked by decoding, against `Settings.max_upload_bytes` and `max_pixels`; every
refusal is a 4xx (or 503 when busy) with a JSON body {"error": {"code", "message"}}. Uploads are
held in memory only; nothing is written to disk.
"""

from __future__ import annotations

import base64
import json
import math
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..curve import Curve
from ..denoise import DEFAULT_MODE as DEFAULT_DENOISE
from ..imageio import FORMATS, ImageError, ImageFile, decode_image, encode_image
from ..pipeline import DEFAULT_SOLVER, SOLVERS, Restorer
from ..tone import IMPROVED
from .workers import RestorerFactory, WorkerPool

API = "/api/v1"
STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff",
               "WEBP": "image/webp", "HEIC": "image/heic"}
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "HEIC": ".heic"}
FORMAT_NAMES = {**{f: f for f in FORMATS}, "JPG": "JPEG", "TIF": "TIFF", "HEIF": "HEIC"}
# Multipart framing and the small form fields around the file.
FORM_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """Service limits and the default estimation settings (those of the CLI)."""

    max_upload_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000
    workers: int = 2
    queue: int = 8
    solver: str = DEFAULT_SOLVER
    arch: str = "small"
    max_iters: int = 1000
    seed: int = 0

    def restorer(self, solver: str) -> Restorer:
        return Restorer(solver, arch=self.arch, max_iters=self.max_iters, seed=self.seed)


class ApiError(Exception):
    """A refusal: HTTP status, a short machine code and a plain-words message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


# --------------------------------------------------------------------------- admission


class Admission:
    """ASGI middleware for the work endpoints: body size limit first, then a pool slot.

    The body is read here (at most `max_body` bytes) while holding the slot, so that neither
    oversized nor surplus uploads ever reach memory beyond the pool's bound.
    """

    def __init__(self, app, pool: WorkerPool, max_body: int, paths: frozenset[str]) -> None:
        self.app, self.pool, self.max_body, self.paths = app, pool, max_body, paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        if not self.pool.try_admit():
            retry = str(self.pool.retry_after())
            await error_response(
                503, "busy", f"the server is busy; try again in {retry} s",
                {"Retry-After": retry})(scope, receive, send)
            return
        try:
            body = await self._read_body(receive)
            if body is None:
                await self._too_large(scope, receive, send)
            else:
                await self.app(scope, _replay(body, receive), send)
        finally:
            self.pool.release()

    async def _read_body(self, receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope, receive, send) -> None:
        limit = self.max_body - FORM_OVERHEAD
        await error_response(
            413, "too_large", f"the upload is larger than the limit of {limit} bytes",
            {"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
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


def _image_error(message: str) -> ApiError:
    """Map a decoder message to a status: too big 413, not a supported image 415, else 422."""
    if "exceeds the" in message:
        code = "too_many_pixels" if "pixels" in message else "too_large"
        return ApiError(413, code, message)
    if "not an image" in message or "unsupported image format" in message:
        return ApiError(415, "unsupported_type",
                        f"{message}. Supported: {', '.join(FORMATS)}")
    if "file is empty" in message:
        return ApiError(400, "empty_file", message)
    return ApiError(422, "bad_image", message)


def restore_job(pool: WorkerPool, settings: Settings, job: Job) -> dict:
    """Decode, restore (estimating unless a curve is given) and encode: runs on a worker."""
    img = _decode(job, settings)
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
    fmt = job.format or img.format
    try:
        body = encode_image(res.image, fmt, like=img, quality=job.quality)
    except ImageError as exc:
        raise ApiError(422, "cannot_encode", f"{job.name}: {exc}") from None
    return {"body": body, "format": fmt, "curve": res.curve, "iterations": res.iterations,
            "loss": res.loss, "converged": res.converged, "width": img.width,
            "height": img.height, "seconds": res.seconds, "denoise": res.denoise,
            "needs_correction": res.needs_correction, "mean_gain": res.mean_gain}


def estimate_job(pool: WorkerPool, settings: Settings, job: Job) -> dict:
    """Decode and estimate phi; with job.preview, also a preview and its base layer."""
    img = _decode(job, settings)
    restorer = pool.restorer(job.solver)
    restorer.adapt = job.adapt != "off"
    (decided, est), base = restorer.estimate_curve(img.pixels)
    # the decision, over the defaults (not this worker's controls from an earlier request)
    curve = job.curve_with_controls(est.phi_s, est.phi_h, replace(
        IMPROVED.curve(est.phi_s, est.phi_h), exposure=decided.exposure, amount=decided.amount))
    out = {"name": job.name, "width": img.width, "height": img.height, "format": img.format,
           "solver": job.solver, "curve": curve.to_dict(), "applied": _applied(curve),
           "iterations": est.iterations, "loss": _finite(est.loss),
           "converged": est.converged, "seconds": est.seconds, "preview": None}
    if job.preview:
        out["preview"] = preview(img.pixels, base, job.preview)
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


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _applied(curve: Curve) -> dict[str, float]:
    a_s, a_h = curve.applied
    return {"phi_s": a_s, "phi_h": a_h}


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
            "iterations": result["iterations"], "loss": _finite(result["loss"]),
            "converged": result["converged"], "width": result["width"],
            "height": result["height"], "format": fmt, "media_type": MEDIA_TYPES[fmt],
            "filename": filename, "denoise": result["denoise"],
            "needs_correction": result["needs_correction"], "mean_gain": result["mean_gain"]}
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


def _given_curve(params: str | None, phi_s: float | None, phi_h: float | None) -> Curve | None:
    """The curve fixed by the request (`params` JSON or phi_s/phi_h), as the CLI's given_curve."""
    manual = phi_s is not None or phi_h is not None
    if manual and params is not None:
        raise ApiError(422, "bad_request", "give either params or phi_s/phi_h, not both")
    try:
        if params is not None:
            data = json.loads(params)
            if not isinstance(data, dict):
                raise ValueError("params must be a JSON object")
            return Curve.from_dict(data)
        if manual:
            return IMPROVED.curve(phi_s or 0.0, phi_h or 0.0)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ApiError(422, "bad_request", f"bad curve parameters: {exc}") from None
    return None


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
    app.state.pool, app.state.settings = pool, settings
    app.add_middleware(Admission, pool=pool,
                       max_body=settings.max_upload_bytes + FORM_OVERHEAD,
                       paths=frozenset(f"{API}/{p}" for p in ("restore", "estimate", "apply")))

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

    @app.exception_handler(Exception)
    async def _internal(_request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", f"internal error ({type(exc).__name__})")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    def job(data: bytes, name: str, solver: str | None, **fields) -> Job:
        return Job(data, name, solver or settings.solver, **fields)

    async def run(fn, j: Job) -> dict:
        try:
            return await pool.run(fn, pool, settings, j)
        except ValueError as exc:
            raise ApiError(422, "bad_request", f"{j.name}: {exc}") from None

    @app.post(f"{API}/restore", tags=["restore"], summary="Restore an uploaded photo",
              response_class=Response,
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                               "description": "the restored image (or JSON, see `response`)"}})
    async def restore(file: FileField, solver: SolverField = None,
                      strength: StrengthField = None, highlight_scale: HighlightField = None,
                      phi_s: PhiField = None, phi_h: PhiField = None,
                      params: ParamsField = None, format: FormatField = None,  # noqa: A002
                      quality: QualityField = 95, denoise: DenoiseField = None,
                      adapt: AdaptField = None, response: ResponseQuery = "image"):
        """Estimates phi (unless phi_s/phi_h or params fix it) and returns the restored image."""
        data, name = await _read_upload(file, settings)
        given = _given_curve(params, _control("phi_s", phi_s), _control("phi_h", phi_h))
        j = job(data, name, solver, strength=_control("strength", strength),
                highlight_scale=_control("highlight_scale", highlight_scale),
                format=_format(format), quality=quality, denoise=denoise, adapt=adapt)
        if given is not None:
            j = replace(j, given=j.curve_with_controls(given.phi_s, given.phi_h, given))
        result = await run(restore_job, j)
        return image_or_json(result, name, response)

    @app.post(f"{API}/apply", tags=["restore"], summary="Apply given curve parameters",
              response_class=Response,
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                               "description": "the restored image (or JSON, see `response`)"}})
    async def apply(file: FileField, phi_s: PhiField = None, phi_h: PhiField = None,
                    params: ParamsField = None, strength: StrengthField = None,
                    highlight_scale: HighlightField = None,
                    format: FormatField = None,  # noqa: A002
                    quality: QualityField = 95, denoise: DenoiseField = None,
                    response: ResponseQuery = "image"):
        """Applies the curve given by phi_s/phi_h or params; no estimation."""
        data, name = await _read_upload(file, settings)
        given = _given_curve(params, _control("phi_s", phi_s), _control("phi_h", phi_h))
        if given is None:
            raise ApiError(422, "bad_request", "apply needs phi_s and phi_h, or params")
        j = job(data, name, None, strength=_control("strength", strength),
                highlight_scale=_control("highlight_scale", highlight_scale),
                format=_format(format), quality=quality, denoise=denoise)
        j = replace(j, given=j.curve_with_controls(given.phi_s, given.phi_h, given))
        result = await run(restore_job, j)
        return image_or_json(result, name, response)

    @app.post(f"{API}/estimate", tags=["restore"], summary="Estimate the curve only")
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

    @app.get(f"{API}/health", tags=["service"], summary="Service status and limits")
    async def health() -> dict:
        return {"status": "ok", "version": __version__, "pool": pool.stats(),
                "limits": {"max_upload_bytes": settings.max_upload_bytes,
                           "max_pixels": settings.max_pixels},
                "solvers": list(SOLVERS), "default_solver": settings.solver,
                "default_highlight_scale": IMPROVED.highlight_scale}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
