"""The BentoML service: the champion model, served over the simple API and the V2 protocol, and its challenger in
shadow.

`bentoml serve bento.service:ReadmissionService` (or `bentoml serve` in the project root).
Routes live in bento/server/app.py (`/` leads to the interactive documentation at /docs); BentoML adds /livez, /readyz
and /healthz.

Faults (tests/service/test_faults.py): a model missing, corrupt or trained on another feature spec leaves the
server up but not ready (a log line says why; predictions answer 503); a worker that dies is respawned;
SIGTERM drains before it stops (bento/server/drain.py). Connections are bounded (bento/server/connections.py).

The challenger the champion's stored model names (`readmission import`) is declared beside it, so `bentoml build`
carries both, and loaded into every worker for shadow scoring (READMISSION_SHADOW, bento/predictionlog/shadow.py);
a challenger missing or broken only means no shadow (/health says why), never a service that is not ready.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import bentoml
import bentoml.serving
from bentoml._internal.models import Model as StoredModel
from bentoml._internal.types import PathType
from bentoml.exceptions import BentoMLException
from starlette.types import ASGIApp, Receive, Scope, Send

from bento.core.scoring import ScoringCore
from bento.model.predictor import CHALLENGER_TAG, ModelLoadError, Predictor
from bento.monitoring import metrics
from bento.server import allocator, connections, drain, middlewares
from bento.server.app import create_app
from bento.settings import ServiceSettings, SettingsError

logger = logging.getLogger("readmission")
logger.setLevel(logging.INFO)  # BentoML's server logging keeps the root at WARNING; our INFO lines reach its handler
GC_THRESHOLDS = (20_000, 20, 20)  # the default is (700, 10, 10)
try:
    SETTINGS = ServiceSettings.from_env()
except SettingsError as error:  # a bad variable: one line that names it, not a traceback; nothing starts
    raise SystemExit(f"readmission: {error}") from None
CORE = ScoringCore(SETTINGS)


def named_challenger(model_tag: str) -> str:
    """The tag of the challenger that the champion `model_tag` names in the model store (the Bento's, when serving
    one); empty where it names none or is not there."""
    try:
        return str(bentoml.models.get(model_tag).info.metadata.get(CHALLENGER_TAG, ""))
    except BentoMLException:
        return ""


CHALLENGER = named_challenger(SETTINGS.model_tag)
app = create_app(CORE)
DRAIN = drain.Drain(SETTINGS.drain_seconds, CORE)

# BentoML turns circus's respawn of dead workers off where BENTOML_CONTAINERIZED is set (its Dockerfile sets
# it): a worker killed there (OOM killer, segfault) is never replaced, and when it was the last one the whole
# server exits. Respawn everywhere instead: the arbiter notices within its 10 s check period and starts a new
# worker, with or without Kubernetes. (create_watcher, in the `bentoml serve` process, asks this function;
# that process imports this module before it creates its watchers.)
bentoml.serving.running_inside_container = lambda: False
middlewares.install(SETTINGS.tracing)  # the traffic timeout below for less, no tracing middleware unless on


class ServedModel(bentoml.models.BentoModel):
    """A BentoModel that lets the server start without its model: the worker then stays not ready.

    BentoML resolves every model of the service before it starts the workers and stops with an error when
    one is not in the store; here the worker logs what is wrong and /readyz stays 503 instead. `bentoml
    build` still refuses a missing model (it asks `to_info`), and copying into a Bento still raises.
    """

    def resolve(self, base_path: PathType | None = None) -> StoredModel | None:  # type: ignore[override]
        """The stored model, or None where it is not in the store (and not being copied into a Bento)."""
        try:
            return super().resolve(base_path)
        except BentoMLException:
            if base_path is not None:
                raise
            return None


class ApplicationFirst:
    """ASGI middleware in BentoML's stack, after its tracing and access log (where on) and the request timeout
    (bento/server/middlewares.py): every request that is not for one of BentoML's own routes goes straight to the
    application, past BentoML's request context (which only its @bentoml.api methods read) and its router. Unknown
    paths so get the application's JSON 404.
    """

    def __init__(self, app: ASGIApp, application: ASGIApp) -> None:
        self.app = app
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route by path: BentoML's routes to BentoML, everything else to the application."""
        path = scope.get("path", "")
        if scope["type"] == "http" and path not in BENTOML_PATHS and not path.startswith(BENTOML_PREFIXES):
            await self.application(scope, receive, send)
            return
        await self.app(scope, receive, send)


# What BentoML serves itself: probes and its own documents and assets. Its index page ("/": a Swagger page of
# /docs.json, which lists only these probes and loads a third-party script) is the application's redirect to /docs.
BENTOML_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/docs.json", "/schema.json"})
BENTOML_PREFIXES = ("/static_content/", "/assets/")


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="readmission",
    workers=SETTINGS.workers,
    traffic={"timeout": 30},
    # BentoML's traffic metrics label by raw path (unbounded); bento/monitoring/metrics.py keeps its names, bounded.
    metrics={"enabled": False},
    endpoints={"livez": "/livez", "readyz": "/readyz"},
    # BentoML wraps every request in an OpenTelemetry span even with nothing exporting them: about a
    # quarter of a single-row request's time. Off unless READMISSION_TRACING is set (and its middleware left out).
    tracing={} if SETTINGS.tracing else {"excluded_urls": ["/"]},
    # a line per request: about a tenth of a single-row request's time. Off unless READMISSION_ACCESS_LOG is set.
    logging={"access": {"enabled": SETTINGS.access_log}},
)
class ReadmissionService:
    """Loads the model from the BentoML store (carried by the Bento) into every worker."""

    model = ServedModel(SETTINGS.model_tag)
    if CHALLENGER:  # declared only where named, so that `bentoml build` carries it beside the champion
        challenger = ServedModel(CHALLENGER)

    def __init__(self) -> None:
        connections.install(CORE)  # uvicorn has not made a connection yet: the service is created in its lifespan
        DRAIN.install()  # uvicorn's SIGTERM handler is in place
        try:
            stored = self.model
            if stored is None:
                missing = f"model {SETTINGS.model_tag} is not in the BentoML model store"
                raise ModelLoadError(missing + " (see READMISSION_MODEL_TAG and `readmission import`)")
            predictor = Predictor.load(Path(stored.path), str(stored.tag))
        except ModelLoadError as error:
            logger.error("not ready: the model cannot be loaded: %s", error)
            metrics.model_missing()
            return
        CORE.load(predictor)
        metrics.model_loaded(predictor.info, predictor.backend)
        info = predictor.info
        logger.info("serving %s version %s (%s) with %s", info.name, info.version, info.tag, predictor.backend)
        self._load_challenger()
        gc.freeze()  # start-up objects never die: keep them out of the collector's full passes (tail latency)
        # Requests make little cyclic garbage (full passes under load collected nothing) but, once start-up
        # objects are frozen, the default thresholds run a ~10 ms full pass every second: collect less often.
        gc.set_threshold(*GC_THRESHOLDS)
        allocator.keep(SETTINGS.keep_freed_mb)

    def _load_challenger(self) -> None:
        """Score the champion's challenger in shadow where READMISSION_SHADOW allows, or say why none is."""
        if SETTINGS.shadow == "off":
            CORE.shadow(None, "off (READMISSION_SHADOW=off)")
        elif not CHALLENGER:
            CORE.shadow(None, "none imported with the champion (`readmission import` copies the registry's challenger)")
        else:
            try:
                stored = getattr(self, "challenger", None)
                if stored is None:
                    raise ModelLoadError(f"model {CHALLENGER} is not in the BentoML model store")
                CORE.shadow(Predictor.load(Path(stored.path), str(stored.tag)))
            except ModelLoadError as error:
                logger.error("no shadow scoring: the challenger cannot be loaded: %s", error)
                CORE.shadow(None, f"failed to load: {error}")
        challenger = CORE.challenger
        if challenger is not None:
            info = challenger.info
            logger.info("shadow: challenger version %s (%s) scores every served row", info.version, info.tag)

    def __is_ready__(self) -> bool:
        """Ready only with a model loaded, and not once SIGTERM has begun the drain."""
        return CORE.ready()


ReadmissionService.add_asgi_middleware(ApplicationFirst, application=app)
