"""A keysmith client in Python, as a PMS integration would write one.

It issues a key for a stay (with a request_id, so a retry is safe), reads it
back, lists the stay's keys a page at a time, watches the stay's keys change,
revokes the stay, and shows how to read the details of an error. Every step
checks what keysmith answered: the program exits non-zero if anything is not
as expected, so CI runs it as a test (examples/clients/run.sh).

    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/python keysmith_client.py --addr 127.0.0.1:50051 \
        --token ks_demo_front_desk_not_for_production

The stubs are generated from proto/ at start into generated/ (git-ignored)
with grpcio-tools, so they always match the protos beside them.
"""

import argparse
import datetime
import os
import queue
import sys
import threading
import uuid

import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "proto"))
GENERATED = os.path.join(HERE, "generated")
# Generous: the CI machine is shared and slow; nothing here waits this long
# unless something is wrong.
TIMEOUT_SECONDS = 30


def generate_stubs():
    """Compiles keysmith/v1/access.proto into generated/ and imports it."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    os.makedirs(GENERATED, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={GENERATED}",
            f"--grpc_python_out={GENERATED}",
            "keysmith/v1/access.proto",
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed ({code}) on {PROTO_ROOT}")
    sys.path.insert(0, GENERATED)
    from keysmith.v1 import access_pb2, access_pb2_grpc

    return access_pb2, access_pb2_grpc


pb, pb_grpc = generate_stubs()


class Expectations:
    """Counts the checks; the first that fails ends the run."""

    def __init__(self):
        self.passed = 0

    def check(self, condition, what):
        if not condition:
            print(f"FAILED: {what}", file=sys.stderr)
            print(f"python: {self.passed} passed, 1 failed")
            sys.exit(1)
        self.passed += 1
        print(f"ok: {what}")


expect = Expectations()


def timestamp(moment):
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromDatetime(moment)
    return t


class Watch:
    """WatchKeys on a thread of its own, its messages handed over a queue."""

    def __init__(self, stub, request, metadata):
        self.events = queue.Queue()
        self.call = stub.WatchKeys(request, metadata=metadata)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for message in self.call:
                self.events.put(message)
        except grpc.RpcError as error:
            # Our own cancel() ends the stream CANCELLED; anything else is
            # handed to the reader as it is.
            if error.code() != grpc.StatusCode.CANCELLED:
                self.events.put(error)

    def next(self):
        """The next message, or None if none came within the timeout."""
        try:
            event = self.events.get(timeout=TIMEOUT_SECONDS)
        except queue.Empty:
            return None
        if isinstance(event, grpc.RpcError):
            raise event
        return event

    def stop(self):
        self.call.cancel()
        self.thread.join(timeout=TIMEOUT_SECONDS)


def error_details(error):
    """The ErrorInfo and BadRequest of an error, from its
    grpc-status-details-bin trailer (a google.rpc.Status)."""
    status = rpc_status.from_call(error)
    info, bad_request = None, None
    if status is None:
        return info, bad_request
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
    return info, bad_request


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument(
        "--token",
        default=os.environ.get("KEYSMITH_TOKEN", "ks_demo_front_desk_not_for_production"),
        help="bearer token (default: $KEYSMITH_TOKEN, else examples/keysmith.toml's front desk)",
    )
    parser.add_argument("--property", default="demo-hotel")
    args = parser.parse_args()

    metadata = [("authorization", f"Bearer {args.token}")]
    channel = grpc.insecure_channel(args.addr)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT_SECONDS)
    stub = pb_grpc.AccessServiceStub(channel)

    # One stay of this run: ids of its own, so that the program can run
    # again against the same keysmith.
    run = uuid.uuid4().hex[:12]
    stay = f"py-stay-{run}"
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    starts_at, ends_at = now + datetime.timedelta(days=1), now + datetime.timedelta(days=4)

    # Watch the stay's keys before changing them; the first message says the
    # watch is established, so nothing issued after it is missed.
    watch = Watch(
        stub, pb.WatchKeysRequest(property_id=args.property, reservation_key=stay), metadata
    )
    first = watch.next()
    expect.check(
        first is not None and first.event_type == pb.KEY_EVENT_TYPE_WATCHING,
        "WatchKeys is established (KEY_EVENT_TYPE_WATCHING)",
    )

    # Issue: a card for room 101 and the lobby, the first key of the stay.
    issue = pb.IssueRequest(
        property_id=args.property,
        request_id=f"py-issue-{run}",
        holder_id=f"guest-{run}",
        holder_name="Ada Guest",
        entrance_ids=["room-101", "lobby"],
        starts_at=timestamp(starts_at),
        ends_at=timestamp(ends_at),
        reservation_key=stay,
        modes=[pb.CREDENTIAL_MODE_CARD],
    )
    key = stub.Issue(issue, metadata=metadata, timeout=TIMEOUT_SECONDS).key
    expect.check(key.state == pb.KEY_STATE_ACTIVE, f"Issue: key {key.key_id} is ACTIVE")
    expect.check(
        len(key.credentials) == 1 and key.credentials[0].card_data != "",
        "Issue: the card's data is in the answer (the token has keys.read_secrets)",
    )
    # A retry with the same request_id (a lost answer, say) returns the
    # first answer instead of issuing a second key.
    retried = stub.Issue(issue, metadata=metadata, timeout=TIMEOUT_SECONDS).key
    expect.check(retried.key_id == key.key_id, "Issue retried with its request_id: the same key")

    # A co-guest's key joins the stay (room 101 only).
    co_guest = stub.Issue(
        pb.IssueRequest(
            property_id=args.property,
            request_id=f"py-issue-co-guest-{run}",
            holder_id=f"co-guest-{run}",
            entrance_ids=["room-101"],
            starts_at=timestamp(starts_at),
            ends_at=timestamp(ends_at),
            reservation_key=stay,
            modes=[pb.CREDENTIAL_MODE_CARD],
        ),
        metadata=metadata,
        timeout=TIMEOUT_SECONDS,
    ).key
    expect.check(
        co_guest.entrances[0].behaviour == pb.RESERVATION_BEHAVIOUR_JOIN,
        "Issue: the co-guest's key joins the reservation",
    )

    # GetKey
    got = stub.GetKey(
        pb.GetKeyRequest(property_id=args.property, key_id=key.key_id),
        metadata=metadata,
        timeout=TIMEOUT_SECONDS,
    )
    expect.check(
        got.key_id == key.key_id and got.holder_id == issue.holder_id,
        "GetKey returns the key",
    )

    # ListKeys, one key per page, following next_page_token to the end.
    listed, token, pages = [], "", 0
    while True:
        page = stub.ListKeys(
            pb.ListKeysRequest(
                property_id=args.property, reservation_key=stay, page_size=1, page_token=token
            ),
            metadata=metadata,
            timeout=TIMEOUT_SECONDS,
        )
        pages += 1
        listed.extend(k.key_id for k in page.keys)
        token = page.next_page_token
        if not token:
            break
    expect.check(
        sorted(listed) == sorted([key.key_id, co_guest.key_id]) and pages >= 2,
        f"ListKeys: both keys of the stay, over {pages} pages",
    )

    # Revoke the stay: both keys in one change. Offline cards keep opening
    # until overridden or expired, and the answer says so.
    revoked = stub.Revoke(
        pb.RevokeRequest(
            property_id=args.property, request_id=f"py-revoke-{run}", reservation_key=stay
        ),
        metadata=metadata,
        timeout=TIMEOUT_SECONDS,
    )
    expect.check(
        sorted(k.key_id for k in revoked.keys) == sorted([key.key_id, co_guest.key_id])
        and all(k.state == pb.KEY_STATE_REVOKED for k in revoked.keys),
        "Revoke by reservation_key: both keys REVOKED",
    )
    expect.check(
        any(w.code == "OFFLINE_CREDENTIAL_STILL_VALID" for w in revoked.warnings),
        "Revoke: warned that offline cards stay valid until overridden",
    )

    # The watch saw every change, in order: two issued, two revoked.
    seen = []
    while len(seen) < 4:
        event = watch.next()
        if event is None:
            break
        seen.append((pb.KeyEventType.Name(event.event_type), event.key.key_id))
    watch.stop()
    issued = [k for t, k in seen if t == "KEY_EVENT_TYPE_ISSUED"]
    revoked_seen = [k for t, k in seen if t == "KEY_EVENT_TYPE_REVOKED"]
    expect.check(
        issued == [key.key_id, co_guest.key_id]
        and sorted(revoked_seen) == sorted(issued)
        and [t for t, _ in seen] == ["KEY_EVENT_TYPE_ISSUED"] * 2 + ["KEY_EVENT_TYPE_REVOKED"] * 2,
        f"WatchKeys: both keys issued, then both revoked, in order ({seen})",
    )

    # A bad request: no holder, and a window that ends before it starts.
    # keysmith answers INVALID_ARGUMENT with a google.rpc.Status in the
    # grpc-status-details-bin trailer: an ErrorInfo (its reason is what a
    # program branches on) and a BadRequest naming every wrong field.
    try:
        stub.Issue(
            pb.IssueRequest(
                property_id=args.property,
                entrance_ids=["lobby"],
                starts_at=timestamp(ends_at),
                ends_at=timestamp(starts_at),
                modes=[pb.CREDENTIAL_MODE_CARD],
            ),
            metadata=metadata,
            timeout=TIMEOUT_SECONDS,
        )
        expect.check(False, "a bad Issue is refused")
    except grpc.RpcError as error:
        expect.check(
            error.code() == grpc.StatusCode.INVALID_ARGUMENT,
            f"a bad Issue is INVALID_ARGUMENT ({error.details()})",
        )
        info, bad_request = error_details(error)
        expect.check(
            info is not None and info.domain == "keysmith.dev" and info.reason == "FIELD_REQUIRED",
            "its ErrorInfo: domain keysmith.dev, reason FIELD_REQUIRED "
            f"({info.domain if info else None}, {info.reason if info else None})",
        )
        fields = sorted(v.field for v in bad_request.field_violations) if bad_request else []
        expect.check(
            fields == ["ends_at", "holder_id"],
            f"its BadRequest names holder_id and ends_at ({fields})",
        )

    channel.close()
    print(f"python: {expect.passed} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as error:
        # A call keysmith refused where the program expected an answer.
        print(f"FAILED: {error.code().name}: {error.details()}", file=sys.stderr)
        print(f"python: {expect.passed} passed, 1 failed")
        sys.exit(1)
