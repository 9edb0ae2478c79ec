"""EventBridge's PutEvents, as lifeboat's rescue events meet it: every entry moto accepts is
recorded in the ledger (`event-published`) for the tests to read; an entry larger than 256 KB
fails on its own with the answer still 200 ("Amazon EventBridge events": an entry's size is at
most 256 KB; "PutEvents", Amazon EventBridge API Reference: FailedEntryCount and each entry's
ErrorCode), which moto does not check. Ten entries a request is moto's own check. A schedule
rule matches no event put on the bus.
"""

import json

from moto.events import models as events_models

from . import state as st

MAX_ENTRY_BYTES = 256 * 1024

_original_put_events = events_models.EventsBackend.put_events


def put_events(self, events):
    too_large = [
        len(json.dumps({k: e.get(k) for k in ("Source", "DetailType", "Detail", "Resources")}).encode()) > MAX_ENTRY_BYTES
        for e in events
    ]
    kept = [e for e, big in zip(events, too_large) if not big]
    answers = iter(_original_put_events(self, kept) if kept else [])
    entries = []
    for event, big in zip(events, too_large):
        if big:
            entries.append({"ErrorCode": "InvalidArgument", "ErrorMessage": "Total size of the entry exceeds 256KB."})
            continue
        answer = next(answers)
        entries.append(answer)
        if "EventId" in answer:
            st.record(
                "event-published",
                bus=event.get("EventBusName") or "default",
                source=event.get("Source"),
                detail_type=event.get("DetailType"),
                detail=json.loads(event.get("Detail") or "{}"),
            )
    return entries


_original_send_to_targets = events_models.Rule.send_to_targets


def send_to_targets(self, event, transform_input=True):
    # A rule has an event pattern or a schedule ("Creating rules that run on a schedule in
    # Amazon EventBridge"): a schedule rule matches no event put on the bus; moto's empty
    # pattern matched every one.
    if self.scheduled_expression:
        return
    return _original_send_to_targets(self, event, transform_input)


def apply():
    events_models.EventsBackend.put_events = put_events
    events_models.Rule.send_to_targets = send_to_targets
