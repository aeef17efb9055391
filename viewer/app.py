"""The viewer's web app: read-only pages over the dataset registry and the model store.

Starlette routes, Jinja2 templates rendered on the server (autoescaped: row content is model
output and never trusted), SVG charts drawn on the server, one small script for progressive
loading of histograms. Every response carries a Content-Security-Policy that allows scripts and
styles only from this server, so even markup that slipped through escaping could not run.
"""

from __future__ import annotations

import functools
import hmac
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import lance
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from assay.errors import AssayError
from datasets_registry import DatasetVersion, Registry, VersionInfo
from datasets_registry.diff import DatasetDiff, diff_versions
from datasets_registry.digests import DigestCache
from datasets_registry.lineage import Lineage, lineage_graph
from model_store import ModelStore
from viewer import charts, queries
from viewer.diffs import DiffSummary, diff_summary
from viewer.errors import ViewerError
from viewer.rows import row_views

HERE = Path(__file__).parent
TOKEN_COOKIE = "assay_ui_token"
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


@dataclass(frozen=True)
class ViewerSettings:
    """What the app serves and who may see it."""

    registry_root: str
    model_root: Path
    token: str | None = None
    """When set, every request must carry it (`?token=` once, then a cookie)."""
    jobs_path: Path | None = None
    """The job store's SQLite file; None: no jobs page."""
    diff_cache: int = 16
    """How many computed diffs to keep (versions never change, so a kept diff stays right)."""
    digest_rows: int = 4_000_000
    """How many rows of fragment and version digests to keep for diffs (`DigestCache`: about
    70 MB for a one-fragment version of a million rows of six columns, counted as 2M rows);
    a diff of two versions whose digests are kept reads no content."""


class _Guard:
    """ASGI middleware: the token check and the security headers on every response."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _authorised(self, scope: Scope) -> tuple[bool, bool]:
        """(allowed, came by query string: set the cookie)."""
        if self.token is None:
            return True, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0]
        if given and hmac.compare_digest(given.encode(), self.token.encode()):
            return True, True
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    key, _, cookie = part.strip().partition("=")
                    if key == TOKEN_COOKIE and hmac.compare_digest(cookie.encode(), self.token.encode()):
                        return True, False
            if name == b"authorization":
                scheme, _, bearer = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(bearer.encode(), self.token.encode()):
                    return True, False
        return False, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed, set_cookie = self._authorised(scope)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + SECURITY_HEADERS
                if set_cookie and self.token is not None:
                    cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    headers.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        if not allowed:
            response = Response("a token is required: open the URL `assay ui` printed\n", 401)
            await response(scope, receive, send_with_headers)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await Response("read-only\n", 405)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def url(path: str, **params: Any) -> str:
    """`path` with the non-empty `params` as a query string."""
    kept = {k: v for k, v in params.items() if v is not None and v != ""}
    return path + ("?" + urlencode(kept) if kept else "")


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4g}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _pretty(value: Any) -> str:
    """Indented JSON of a plain value (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@dataclass(frozen=True)
class Resolved:
    """A dataset's registered versions and tags, and one version with its Lance data."""

    infos: list[VersionInfo]
    tags: dict[str, int]
    version: DatasetVersion
    data: lance.LanceDataset

    @property
    def ref(self) -> str:
        return self.version.ref

    def to_lance(self) -> lance.LanceDataset:
        """The version's Lance data, already open (what `diff_versions` reads)."""
        return self.data


class _Cache:
    """A small LRU of immutable results (a version never changes once registered)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, make: Any) -> Any:
        if self.size <= 0:
            return make()
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


class Viewer:
    """The pages: each method takes a request and returns a response."""

    def __init__(self, settings: ViewerSettings) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry_root)
        self.models = ModelStore(settings.model_root)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.env.globals.update(url=url, number=_number, size=_size, quote=quote)
        self.env.filters["pretty"] = _pretty
        # Compiled at start, not in the first request of each page (tens of ms a page).
        for template in self.env.list_templates(extensions=["html"]):
            self.env.get_template(template)
        self.diffs = _Cache(settings.diff_cache)
        self.summaries = _Cache(settings.diff_cache)
        self.digests = DigestCache(max(0, settings.digest_rows))

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one Viewer per server; datasets are immutable
    def _lance(self, uri: str, version: int) -> lance.LanceDataset:
        return lance.dataset(uri, version=version)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("has_jobs", self.settings.jobs_path is not None)
        return HTMLResponse(self.env.get_template(template).render(**context), status_code=status)

    def error(self, message: str, status: int = 400) -> HTMLResponse:
        return self.render("error.html", status=status, message=message)

    def resolve(self, name: str, selector: str | None) -> Resolved:
        """A dataset's versions and tags (one catalog read) and the version `selector` names:
        a number, a tag, or None for the latest."""
        infos = self.registry.versions(name)
        uri = self.registry.dataset_uri(name)
        listed = self._lance(uri, infos[-1].version).tags.list()
        tags = {tag: int(meta["version"]) for tag, meta in sorted(listed.items())}
        wanted: int | None = infos[-1].version
        if selector and selector != "latest":
            wanted = int(selector) if selector.isdigit() else tags.get(selector)
            if wanted is None:
                raise ViewerError(
                    f"dataset {name!r} has no tag {selector!r}; tags: {', '.join(tags) or 'none'}"
                )
        info = next((i for i in infos if i.version == wanted), None)
        if info is None:
            known = ", ".join(str(i.version) for i in infos)
            raise ViewerError(f"dataset {name!r} has no version {selector}; versions: {known}")
        return Resolved(infos, tags, DatasetVersion(uri, info), self._lance(uri, info.version))

    def open(self, name: str, selector: str | None) -> tuple[DatasetVersion, lance.LanceDataset]:
        """The version `selector` names and its Lance data."""
        resolved = self.resolve(name, selector)
        return resolved.version, resolved.data

    # --- datasets ---------------------------------------------------------------------------

    def datasets(self, request: Request) -> Response:
        rows = []
        for name in self.registry.names():
            infos = self.registry.versions(name)
            last = infos[-1]
            data = self._lance(self.registry.dataset_uri(name), last.version)
            size = sum(f.file_size_bytes or 0 for frag in data.get_fragments() for f in frag.metadata.files)
            rows.append(
                {
                    "name": name,
                    "kind": last.kind,
                    "rows": last.num_rows,
                    "size": size,
                    "latest": last.version,
                    "versions": len(infos),
                    "tags": self.resolve(name, None).tags,
                    "created": last.created_at,
                }
            )
        return self.render("datasets.html", datasets=rows, root=self.registry.root)

    def dataset(self, request: Request) -> Response:
        name = request.path_params["name"]
        params = request.query_params
        resolved = self.resolve(name, params.get("v"))
        version, data = resolved.version, resolved.data
        where = params.get("where") or None
        search = params.get("q") or None
        try:
            page_number = max(0, int(params.get("page", "0")))
        except ValueError:
            page_number = 0
        error = None
        try:
            page = queries.read_page(data, where=where, search=search, page=page_number)
            rows = row_views(page.rows, version.kind)
        except ViewerError as err:
            error, page, rows = str(err), None, []
        tags_by_version: dict[int, list[str]] = {}
        for tag, tagged in resolved.tags.items():
            tags_by_version.setdefault(tagged, []).append(tag)
        return self.render(
            "dataset.html",
            version=version,
            info=version.info,
            schema=data.schema,
            versions=resolved.infos,
            tags_by_version=tags_by_version,
            hist_columns=[column for column, _ in queries.histogram_columns(data.schema)],
            page=page,
            rows=rows,
            where=where or "",
            search=search or "",
            error=error,
            v=params.get("v") or "",
        )

    def histogram(self, request: Request) -> Response:
        name = request.path_params["name"]
        params = request.query_params
        version, data = self.open(name, params.get("v"))
        column = params.get("column", "")
        types = dict(queries.histogram_columns(data.schema))
        if column not in types:
            return self.error(f"{version.ref} has no column {column!r} to draw", 404)
        where = params.get("where") or None
        try:
            hist = queries.column_histogram(data, column, types[column], where)
        except ViewerError as err:
            return self.render("histogram.html", column=column, error=str(err), hist=None)
        shapes = charts.bar_shapes(hist) if hist else []
        base = f"/datasets/{name}"
        links = [url(base, v=params.get("v"), where=queries.combine(where, s.clause)) for s in shapes]
        return self.render(
            "histogram.html",
            column=column,
            hist=hist,
            shapes=list(zip(shapes, links, strict=True)),
            error=None,
            chart=charts,
        )

    def _diff_pair(self, request: Request) -> tuple[dict[str, Any], Resolved | None, Resolved | None]:
        """The versions a diff request names (default: the last two) and the page context."""
        name = request.path_params["name"]
        params = request.query_params
        versions = self.registry.versions(name)
        old_v = params.get("old") or (str(versions[-2].version) if len(versions) > 1 else "")
        new_v = params.get("new") or str(versions[-1].version)
        context: dict[str, Any] = {"name": name, "versions": versions, "old": old_v, "new": new_v}
        if not old_v:
            return context, None, None
        return context, self.resolve(name, old_v), self.resolve(name, new_v)

    def diff(self, request: Request) -> Response:
        """The diff page: the id-level summary now, the full diff inline if already computed,
        else loaded into the page by the script when it is ready."""
        context, old, new = self._diff_pair(request)
        if old is None or new is None:
            return self.render(
                "diff.html", summary=None, note="only one version: nothing to compare", **context
            )
        key = (old.version.ref, new.version.ref)
        # The full diff at once when it is kept, or quick to make (both versions' digests kept,
        # or stored beside the data when the versions were written).
        quick = key in self.diffs.items or (self.digests.ready(old.data) and self.digests.ready(new.data))
        full = self._full_context(old, new) if quick else None
        if full is not None:
            summary = DiffSummary.of(full["diff"])
        else:
            summary = self.summaries.get(
                key, lambda: diff_summary(old.data, new.data, old.version.ref, new.version.ref)
            )
        return self.render("diff.html", summary=summary, full=full, note=None, **context)

    def diff_full(self, request: Request) -> Response:
        """The full diff as a fragment: changed rows by column, stat shifts, first changed rows."""
        context, old, new = self._diff_pair(request)
        if old is None or new is None:
            return self.error("only one version: nothing to compare", 404)
        return self.render("diff_full.html", **self._full_context(old, new), **context)

    def _full_context(self, old: Resolved, new: Resolved) -> dict[str, Any]:
        key = (old.version.ref, new.version.ref)
        result: DatasetDiff = self.diffs.get(key, lambda: diff_versions(old, new, digests=self.digests))
        pairs = []
        if result.changed_rows:
            # By row offset: a take of five rows, not a scan of the ids.
            before = row_views(old.data.take([o for o, _ in result.changed_rows]), old.version.kind)
            after = row_views(new.data.take([n for _, n in result.changed_rows]), new.version.kind)
            pairs = list(zip(result.changed.sample, before, after, strict=True))
        return {"diff": result, "pairs": pairs}

    def lineage(self, request: Request) -> Response:
        name = request.path_params["name"]
        version, _ = self.open(name, request.query_params.get("v"))

        def lookup(ref: str) -> Lineage | None:
            try:
                return self.registry.open(ref).info.lineage
            except AssayError:
                return None

        def model_ref(identity: str) -> str | None:
            stored = identity.split("#", 1)[0]
            return stored if self.models.has(stored) else None

        graph = charts.lineage_layout(lineage_graph(version.ref, lookup), model_ref)
        used_by = [
            record["name"]
            for record in self.models.list()
            if version.ref in record.get("lineage", {}).get("datasets", [])
        ]
        return self.render(
            "lineage.html",
            version=version,
            lineage=version.info.lineage,
            graph=graph,
            chart=charts,
            used_by=used_by,
        )

    # --- models -----------------------------------------------------------------------------

    def model_list(self, request: Request) -> Response:
        return self.render("models.html", models=self.models.list())

    def model(self, request: Request) -> Response:
        record = self.models.record(request.path_params["name"])
        lineage = record.get("lineage") or {}
        metrics = {k: v for k, v in (lineage.get("metrics") or {}).items()}
        scalars = {
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        peak = max((abs(v) for v in scalars.values()), default=0.0) or 1.0
        bars = [(k, v, abs(v) / peak * charts.BAR_AREA_WIDTH) for k, v in scalars.items()]
        series = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, list) and len(v) > 1 and all(isinstance(x, (int, float)) for x in v)
        }
        curves = []
        for key, values in series.items():
            low, high = min(values), max(values)
            span = (high - low) or 1.0
            points = " ".join(
                f"{i / (len(values) - 1) * 300:.1f},{100 - (x - low) / span * 100:.1f}"
                for i, x in enumerate(values)
            )
            curves.append((key, points, low, high, len(values)))
        return self.render(
            "model.html",
            record=record,
            lineage=lineage,
            bars=bars,
            curves=curves,
            suites=self._eval_suites(record["name"]),
            chart=charts,
        )

    def _eval_suites(self, name: str) -> list[dict[str, Any]]:
        """A model's evaluation runs by suite (sorted by name): the latest run's metrics as a
        chart and a table, and each metric's history when the suite ran more than once."""
        from evals.results import load_runs

        by_suite: dict[str, list[dict[str, Any]]] = {}
        for run in load_runs(self.models, name):
            by_suite.setdefault(run.suite, []).append(run.summary())
        suites = []
        for suite, runs in sorted(by_suite.items()):
            # Log order is append order; created_at (ISO 8601) orders runs that raced.
            runs = sorted(runs, key=lambda run: run["created_at"])
            latest = runs[-1]
            suites.append(
                {
                    "suite": suite,
                    "latest": latest,
                    "runs": len(runs),
                    "chart": charts.metric_chart(latest["metrics"]),
                    "history": charts.history_charts(runs) if len(runs) > 1 else [],
                }
            )
        return suites

    # --- jobs -------------------------------------------------------------------------------

    def jobs(self, request: Request) -> Response:
        from viewer.jobs import read_jobs

        if self.settings.jobs_path is None:
            return self.error("no job store in this registry", 404)
        return self.render("jobs.html", jobs=read_jobs(self.settings.jobs_path))

    def job_log(self, request: Request) -> Response:
        from viewer.jobs import read_log

        if self.settings.jobs_path is None:
            return self.error("no job store in this registry", 404)
        job_id = request.path_params["job_id"]
        return self.render("job_log.html", job_id=job_id, **read_log(self.settings.jobs_path, job_id))


def create_app(settings: ViewerSettings) -> ASGIApp:
    """The viewer as an ASGI app (serve it with uvicorn)."""
    viewer = Viewer(settings)

    def page(method: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            try:
                return await run_in_threadpool(method, request)
            except AssayError as err:
                return viewer.error(str(err), 404 if "no " in str(err) else 400)

        return endpoint

    routes = [
        Route("/", lambda request: RedirectResponse("/datasets")),
        Route("/datasets", page(viewer.datasets)),
        Route("/datasets/{name}", page(viewer.dataset)),
        Route("/datasets/{name}/histogram", page(viewer.histogram)),
        Route("/datasets/{name}/diff", page(viewer.diff)),
        Route("/datasets/{name}/diff/full", page(viewer.diff_full)),
        Route("/datasets/{name}/lineage", page(viewer.lineage)),
        Route("/models", page(viewer.model_list)),
        Route("/models/{name}", page(viewer.model)),
        Route("/jobs", page(viewer.jobs)),
        Route("/jobs/{job_id}/log", page(viewer.job_log)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return _Guard(Starlette(routes=routes), settings.token)
