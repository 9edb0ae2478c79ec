"""The local AWS as one WSGI application: moto's, wrapped. Around every request it holds the
lock, lets time pass (snapshots end, hook timers fire), counts the call, throttles it as AWS
would (`throttle`), and injects the configured faults before moto sees the request. Under
/_localaws/ it answers the control API that tests and the demo use (JSON in, JSON out):

  GET  /_localaws/health                  -> {"ok": true}
  POST /_localaws/reset                   moto's state and the harness's, all cleared
  POST /_localaws/snapshots               {"pending_seconds": 2, "volumes": {"vol-…": {"fates":
                                           ["error", "completed"], "pending_seconds": 5}}}
                                           fates: completed | error | never
  POST /_localaws/recycle-bin-rule        {"tags": {"lifeboat:state": "released"}, "days": 7}: a
                                           Recycle Bin retention rule, as the stack's AWS::Rbin::Rule
  POST /_localaws/copies                  {"pending_seconds": 900, "fail": ["snap-…"]}: how long a
                                           cross-Region copy stays pending; sources whose copies fail
  POST /_localaws/faults                  {"seed": 7, "rules": [{"service": "ec2"|"autoscaling"|"*",
                                           "operation": "CreateSnapshots"|"*", "kind": "throttle"|"5xx"|"lost",
                                           "count": 3} | {... "ratio": 0.2}]}
                                           lost: the call is applied, then its response lost (a 500)
  POST /_localaws/edges                   {"off": ["snapshot-rate", ...], "snapshot_quota": 10,
                                           "visibility_lag_seconds": 2, "lost_response_ratio": 0.01,
                                           "other_tenants_share": 0.5}:
                                           AWS's hard edges (all on by default; see state.Edges)
  POST /_localaws/foreign-snapshot        {"volume": "vol-…", "seconds": 10800}: a Data Lifecycle
                                           Manager snapshot of the volume starts -> {"snapshot": id}
  POST /_localaws/retain-on-abandon       {"group": "api-db"}: the group's instance lifecycle
                                           policy says TerminateHookAbandon=retain
  POST /_localaws/health-check            one pass of the EC2 health check: stopped instances
                                           are replaced (through the hook)
  POST /_localaws/clock/advance           {"seconds": 3600}: the emulator's clock moves on
  POST /_localaws/clock                   {"scale": 10}: from now on the emulator's time runs ten
                                           times as fast as real time -> {"now": t, "scale": 10};
                                           {"scale": 0} stops it (only clock/advance moves it)
  GET  /_localaws/throttle                the throttling buckets and each caller's use of them
  POST /_localaws/summary                 {"kinds": ["action-completed"]}: the ledger's counts by
                                           kind, those entries, the counters, the emulator's time
  POST /_localaws/function                {"deliver": true, "sweep_seconds": 60, "timeout_seconds": 900}:
                                           EventBridge invokes the real function through the Lambda
                                           runtime API served here (function.py) -> its counts
  GET  /_localaws/outbox                  the queued EventBridge events (kept)
  POST /_localaws/outbox/take             the queued events, removed: deliver them or drop them
  GET  /_localaws/ledger                  {"entries": [...], "calls": {"ec2:CreateSnapshots": n},
                                           "throttled": {...}, "faults": {...}, "lost": {...},
                                           "actions": [...]}
"""

import io
import json
import time
import traceback
import urllib.parse
import uuid

from . import edges
from . import function
from . import iam
from . import patches
from . import state as st
from . import throttle

EC2_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
    "<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
)
QUERY_ERROR = (
    '<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>{type}</Type>'
    "<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
)


def _signer_of(environ) -> tuple[str, str, str]:
    """Who signed the request and for what, from the SigV4 credential scope: (access key id,
    Region, service such as `ec2` or `autoscaling`)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[0], scope[2], scope[3]
    return "unknown", "unknown", "unknown"


def _error_response(service, status, code, message, start_response):
    request_id = str(uuid.uuid4())
    if service == "ec2":
        body = EC2_ERROR.format(code=code, message=message, request_id=request_id)
    else:
        body = QUERY_ERROR.format(type="Sender", code=code, message=message, request_id=request_id)
    data = body.encode()
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def _fault_response(service, kind, start_response):
    request_id = str(uuid.uuid4())
    if kind == "throttle":
        if service == "ec2":
            status, body = "503 Service Unavailable", EC2_ERROR.format(
                code="RequestLimitExceeded", message="Request limit exceeded.", request_id=request_id
            )
        else:
            status, body = "400 Bad Request", QUERY_ERROR.format(
                type="Sender", code="Throttling", message="Rate exceeded", request_id=request_id
            )
    else:
        if service == "ec2":
            status, body = "500 Internal Server Error", EC2_ERROR.format(
                code="InternalError", message="An internal error has occurred", request_id=request_id
            )
        else:
            status, body = "500 Internal Server Error", QUERY_ERROR.format(
                type="Receiver", code="InternalFailure", message="An internal error has occurred", request_id=request_id
            )
    data = body.encode()
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def _injected_fault(service, operation):
    s = st.state()
    for rule in s.faults:
        if not rule.matches(service, operation):
            continue
        if rule.count is not None:
            if rule.count > 0:
                rule.count -= 1
                return rule.kind
        elif rule.ratio is not None and s.rng.random() < rule.ratio:
            return rule.kind
    # A request can succeed and its response still be lost (a 5xx, a dropped connection): the
    # EC2 API reference's "Idempotency" page is written for exactly that. AWS publishes no rate;
    # on by default, seeded, for the calls that change something.
    key = f"{service}:{operation}"
    if key in st.MUTATING and s.edges.on("lost-responses") and s.lost_rng.random() < s.edges.lost_response_ratio:
        return "lost"
    return None


def _lost_response(app, environ, start_response, service, key):
    """Applies the call, then answers a 500 instead of its response; a call that failed on its
    own changed nothing, and gets its own answer."""
    answer = {}

    def keep(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, headers
        return lambda _data: None

    body = b"".join(app(environ, keep))
    if not answer.get("status", "").startswith("2"):
        start_response(answer["status"], answer["headers"])
        return [body]
    s = st.state()
    s.lost[key] = s.lost.get(key, 0) + 1
    return _fault_response(service, "5xx", start_response)


def _unless_emulator_bug(app, environ, start_response, service, key):
    """moto's answer, unless moto itself failed (an exception in its code, which Flask lets out).
    That is no AWS behaviour but a gap in the emulator: it is answered as AWS answers its own
    failures (500 InternalError, "Error codes for the Amazon EC2 API", server errors) and recorded
    in the ledger as `emulator-bug`, which every test's final check refuses, so a test never
    passes because the emulator broke rather than AWS behaved."""
    try:
        return app(environ, start_response)
    except Exception as err:  # noqa: BLE001 - any failure of moto's own code
        st.record("emulator-bug", operation=key, error="".join(traceback.format_exception(err)[-3:]))
        return _fault_response(service, "5xx", start_response)


def _json(start_response, value, status="200 OK"):
    data = json.dumps(value, default=str).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def summary(kinds=None):
    """What the ledger says, without its entries: their number by kind (and, for the kinds
    asked, the entries themselves), the counters, and the emulator's time. A benchmark of
    thousands of rescues reads this instead of the whole ledger."""
    s = st.state()
    wanted = set(kinds or [])
    return {
        "now": st.now(),
        "scale": s.scale,
        "kinds": dict(s.ledger_kinds),
        "entries": [e for e in s.ledger if e["kind"] in wanted] if wanted else [],
        "calls": s.calls,
        "throttled": s.throttled,
        "faults": s.faults_injected,
        "lost": s.lost,
        "answered": {"requests": s.answered, "answering_seconds": s.answering, "queued_seconds": s.queued},
    }


class LocalAws:
    def __init__(self, moto_app):
        self.moto_app = moto_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/2018-06-01/runtime/"):
            # The Lambda runtime API waits for events without holding the lock.
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            return function.serve(environ, start_response, path, body)
        arrived = time.perf_counter()
        with st.LOCK:
            started = time.perf_counter()
            answer = self.answer(environ, start_response)
            if not environ.get("PATH_INFO", "").startswith(("/_localaws/", "/moto-api/")):
                s = st.state()
                s.answered += 1
                s.answering += time.perf_counter() - started
                s.queued += started - arrived
            return answer

    def answer(self, environ, start_response):
        """One request: the harness's control API, or AWS's through throttling, injected faults and moto."""
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_localaws/"):
            patches.tick()
            try:
                return self.control(environ, path, body, start_response)
            except (ValueError, KeyError, TypeError) as err:
                return _json(start_response, {"error": str(err)}, "400 Bad Request")
        if path == "/moto-api/reset":
            st.reset()
            return self.moto_app(environ, start_response)
        patches.tick()
        caller, region, service = _signer_of(environ)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if body else {}
        # Query protocol (EC2, Auto Scaling): the Action parameter; JSON protocol (EventBridge):
        # the X-Amz-Target header, "AWSEvents.PutEvents".
        target = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        operation = (form.get("Action") or urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("Action") or [target or "?"])[0]
        key = f"{service}:{operation}"
        s = st.state()
        s.calls[key] = s.calls.get(key, 0) + 1
        if not throttle.admit(service, operation, form, caller, region):
            s.throttled[key] = s.throttled.get(key, 0) + 1
            return _fault_response(service, "throttle", start_response)
        refused = iam.refusal(service, operation, form, caller)
        if refused is not None:
            return _error_response(service, *refused, start_response)
        if iam.dry_run(service, form):
            return _error_response(
                service, "412 Precondition Failed", "DryRunOperation", "Request would have succeeded, but DryRun flag is set.", start_response
            )
        kind = _injected_fault(service, operation)
        if kind == "lost":
            return _lost_response(self.moto_app, environ, start_response, service, key)
        if kind is not None:
            s.faults_injected[key] = s.faults_injected.get(key, 0) + 1
            return _fault_response(service, kind, start_response)
        return _unless_emulator_bug(self.moto_app, environ, start_response, service, key)

    def control(self, environ, path, body, start_response):
        s = st.state()
        method = environ.get("REQUEST_METHOD", "GET")
        args = json.loads(body) if body else {}
        if path == "/_localaws/health":
            return _json(start_response, {"ok": True})
        if path == "/_localaws/reset" and method == "POST":
            from moto.moto_api._internal.models import moto_api_backend

            moto_api_backend.reset()
            st.reset()
            return _json(start_response, {"ok": True})
        if path == "/_localaws/snapshots" and method == "POST":
            if "pending_seconds" in args:
                s.pending_seconds = float(args["pending_seconds"])
            for volume, conf in (args.get("volumes") or {}).items():
                if "fates" in conf:
                    fates = [str(f) for f in conf["fates"]]
                    if any(f not in ("completed", "error", "never") for f in fates):
                        raise ValueError("fates are completed, error or never")
                    s.volume_fates[volume] = fates
                if "pending_seconds" in conf:
                    s.volume_pending[volume] = float(conf["pending_seconds"])
            return _json(start_response, {"ok": True})
        if path == "/_localaws/recycle-bin-rule" and method == "POST":
            from . import recyclebin

            recyclebin.add_rule(args.get("tags") or {}, args.get("days", 7))
            return _json(start_response, {"ok": True})
        if path == "/_localaws/copies" and method == "POST":
            if "pending_seconds" in args:
                s.copy_pending_seconds = float(args["pending_seconds"])
            if "fail" in args:
                s.copy_failing = {str(x) for x in args["fail"]}
            return _json(start_response, {"ok": True})
        if path == "/_localaws/faults" and method == "POST":
            if "seed" in args:
                s.rng.seed(args["seed"])
            s.faults = [
                st.FaultRule(
                    service=r.get("service", "*"),
                    operation=r.get("operation", "*"),
                    kind=r["kind"],
                    count=r.get("count"),
                    ratio=r.get("ratio"),
                )
                for r in args.get("rules", [])
            ]
            for rule in s.faults:
                if rule.kind not in ("throttle", "5xx", "lost"):
                    raise ValueError("kind is throttle, 5xx or lost")
            return _json(start_response, {"ok": True})
        if path == "/_localaws/edges" and method == "POST":
            off = set(args.get("off", []))
            unknown = off - st.EDGE_NAMES
            if unknown:
                raise ValueError(f"no such edge: {sorted(unknown)}; edges are {sorted(st.EDGE_NAMES)}")
            s.edges.off = off
            patches.rewake_all()
            for name in ("snapshot_quota", "visibility_lag_seconds", "lost_response_ratio", "other_tenants_share"):
                if name in args:
                    setattr(s.edges, name, type(getattr(s.edges, name))(args[name]))
            return _json(start_response, {"ok": True, "edges": vars(s.edges) | {"off": sorted(s.edges.off)}})
        if path == "/_localaws/foreign-snapshot" and method == "POST":
            return _json(start_response, {"snapshot": edges.foreign_snapshot(args["volume"], float(args["seconds"]))})
        if path == "/_localaws/retain-on-abandon" and method == "POST":
            s.retain_on_abandon.add(args["group"])
            return _json(start_response, {"ok": True})
        if path == "/_localaws/health-check" and method == "POST":
            return _json(start_response, {"replaced": patches.health_check()})
        if path == "/_localaws/clock" and method == "POST":
            return _json(start_response, {"now": st.set_scale(float(args["scale"])), "scale": s.scale})
        if path == "/_localaws/throttle":
            return _json(start_response, throttle.report())
        if path == "/_localaws/summary":
            return _json(start_response, summary(args.get("kinds")))
        if path == "/_localaws/clock/advance" and method == "POST":
            s.offset += float(args["seconds"])
            patches.tick()
            return _json(start_response, {"now": st.now()})
        if path == "/_localaws/function":
            if method == "POST":
                function.configure(args)
            return _json(start_response, function.report())
        if path == "/_localaws/outbox":
            return _json(start_response, {"events": s.outbox})
        if path == "/_localaws/outbox/take" and method == "POST":
            events, s.outbox = s.outbox, []
            return _json(start_response, {"events": events})
        if path == "/_localaws/ledger":
            return _json(
                start_response,
                {
                    "entries": s.ledger,
                    "calls": s.calls,
                    "throttled": s.throttled,
                    "faults": s.faults_injected,
                    "lost": s.lost,
                    "actions": [vars(a) for a in s.actions.values()],
                },
            )
        return _json(start_response, {"error": f"no such control endpoint: {method} {path}"}, "404 Not Found")
