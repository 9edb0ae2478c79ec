"""EventBridge invoking the real function: the Lambda runtime API, served beside the local AWS,
so that the `lifeboat-lambda` binary runs as it does in Lambda (AWS_LAMBDA_RUNTIME_API pointing
here) and the events the local AWS emits reach it without a test handing them over.

Off until a test or the drill's scene turns it on:

  POST /_localaws/function   {"deliver": true, "sweep_seconds": 60, "timeout_seconds": 900}
  GET  /_localaws/function   -> {"invocations": n, "errors": n, "queued": n, "in_flight": n}

Modelled, each from its AWS page:
- The runtime API (Lambda Developer Guide, "Using the Lambda runtime API for custom runtimes"):
  GET /2018-06-01/runtime/invocation/next waits for an event and answers it with the headers
  Lambda-Runtime-Aws-Request-Id, -Deadline-Ms, -Invoked-Function-Arn, -Trace-Id; the function
  answers POST …/invocation/{id}/response or …/error; POST …/init/error when it cannot start.
- EventBridge invokes the function asynchronously with every event its rules match: the
  lifecycle and EBS events the local AWS emits, and a "Scheduled Event" every `sweep_seconds`
  of the emulator's clock (EventBridge User Guide, "Amazon EventBridge events"; "Creating a rule
  that runs on a schedule").
- Asynchronous invocation (Lambda Developer Guide, "Asynchronous invocation"): an invocation
  that errs or outlives its timeout is retried twice, one minute and then two minutes later;
  then the event is dropped (to the failed-event destination the template sets).
"""

import itertools
import json
import time
import uuid

from . import patches
from . import state as st

FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{st.ACCOUNT}:function:lifeboat-lifeboat"
RETRY_DELAYS = (60.0, 120.0)
# Each configuration of the function is a new generation of it: a runtime that polled before
# (a killed binary whose connection the server still holds) is answered "gone" rather than
# handed an event it can never process — Lambda never gives a dead environment an invocation.
GENERATIONS = itertools.count(1)


def configure(args):
    s = st.state()
    if not args.get("deliver", True):
        s.function = None
        return
    s.function = {
        "generation": next(GENERATIONS),
        "timeout": float(args.get("timeout_seconds", 900)),
        "sweep_seconds": float(args.get("sweep_seconds", 300)),
        "next_sweep": st.now() + float(args.get("sweep_seconds", 300)),
        "queue": [],
        "retries": [],  # (when, event, attempt)
        "in_flight": {},  # request id -> (event, attempt, deadline)
        "invocations": 0,
        "errors": 0,
    }


def report():
    f = st.state().function
    if f is None:
        return {"deliver": False}
    return {
        "deliver": True,
        "invocations": f["invocations"],
        "errors": f["errors"],
        "queued": len(f["queue"]),
        "in_flight": len(f["in_flight"]),
    }


def _scheduled_event(t):
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": st.ACCOUNT,
        "time": st.iso(t),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:{st.ACCOUNT}:rule/lifeboat-sweep"],
        "detail": {},
    }


def _failed(f, event, attempt, why):
    f["errors"] += 1
    st.record("function-error", attempt=attempt, detail_type=event.get("detail-type"), error=why[:500])
    if attempt <= len(RETRY_DELAYS):
        f["retries"].append((st.now() + RETRY_DELAYS[attempt - 1], event, attempt + 1))


def _pump(f):
    """Moves what is due into the queue: emitted events, the schedule, retries, timeouts."""
    t = st.now()
    s = st.state()
    f["queue"].extend((event, 1) for event in s.outbox)
    s.outbox = []
    if t >= f["next_sweep"]:
        f["queue"].append((_scheduled_event(t), 1))
        f["next_sweep"] = t + f["sweep_seconds"]
    due = [r for r in f["retries"] if r[0] <= t]
    f["retries"] = [r for r in f["retries"] if r[0] > t]
    f["queue"].extend((event, attempt) for _, event, attempt in due)
    for request_id, (event, attempt, deadline) in list(f["in_flight"].items()):
        if t > deadline:
            del f["in_flight"][request_id]
            _failed(f, event, attempt, "Task timed out")


def next_invocation():
    """Waits (without the lock) until an event is due; returns (request id, event, deadline),
    or None when the function was configured anew (or reset) since this poll began."""
    with st.LOCK:
        f = st.state().function
        generation = None if f is None else f["generation"]
    while True:
        with st.LOCK:
            patches.tick()
            f = st.state().function
            if f is not None and f["generation"] != generation:
                return None
            if f is not None:
                _pump(f)
                if f["queue"]:
                    event, attempt = f["queue"].pop(0)
                    request_id = str(uuid.uuid4())
                    deadline = st.now() + f["timeout"]
                    f["in_flight"][request_id] = (event, attempt, deadline)
                    f["invocations"] += 1
                    st.record("function-invoked", detail_type=event.get("detail-type"), attempt=attempt)
                    # The deadline in real milliseconds: the function's own clock is real time.
                    real_deadline = time.time() + f["timeout"] / max(st.state().scale, 1e-9)
                    return request_id, event, int(real_deadline * 1000)
        time.sleep(0.05)


def answered(request_id, ok, body):
    with st.LOCK:
        f = st.state().function
        if f is None or request_id not in f["in_flight"]:
            return
        event, attempt, _ = f["in_flight"].pop(request_id)
        if ok:
            st.record("function-answered", detail_type=event.get("detail-type"))
        else:
            _failed(f, event, attempt, body.decode("utf-8", "replace"))


def serve(environ, start_response, path, body):
    """One runtime API request; None when `path` is not the runtime API's."""
    prefix = "/2018-06-01/runtime/"
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix):]
    if rest == "invocation/next":
        invocation = next_invocation()
        if invocation is None:
            data = b'{"errorType": "Gone", "errorMessage": "the function was configured anew"}'
            start_response("410 Gone", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        request_id, event, deadline_ms = invocation
        data = json.dumps(event).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Lambda-Runtime-Aws-Request-Id", request_id),
                ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN),
                ("Lambda-Runtime-Trace-Id", f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"),
            ],
        )
        return [data]
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
        answered(parts[1], parts[2] == "response", body)
    elif rest == "init/error":
        with st.LOCK:
            st.record("function-init-error", error=body.decode("utf-8", "replace")[:500])
    start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
