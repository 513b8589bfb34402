// A keysmith client in TypeScript, as a PMS integration would write one.
//
// It issues a key for a stay (with a request_id, so a retry is safe), reads
// it back, lists the stay's keys a page at a time, watches the stay's keys
// change, revokes the stay, and shows how to read the details of an error.
// Every step checks what keysmith answered: the program exits non-zero if
// anything is not as expected, so CI runs it as a test
// (examples/clients/run.sh).
//
//   npm ci && npm run build
//   npm start -- --addr 127.0.0.1:50051 --token ks_demo_front_desk_not_for_production
//
// The messages' types are generated from proto/ by proto-loader-gen-types
// (`npm run generate`, into generated/, git-ignored); the client loads the
// same protos at run time with @grpc/proto-loader, so no protoc is needed.
import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";

import type { ProtoGrpcType } from "../generated/access";
import type { AccessKey__Output } from "../generated/keysmith/v1/AccessKey";
import type { AccessServiceClient } from "../generated/keysmith/v1/AccessService";
import type { GetKeyRequest } from "../generated/keysmith/v1/GetKeyRequest";
import type { IssueRequest } from "../generated/keysmith/v1/IssueRequest";
import type { IssueResponse__Output } from "../generated/keysmith/v1/IssueResponse";
import type { ListKeysRequest } from "../generated/keysmith/v1/ListKeysRequest";
import type { ListKeysResponse__Output } from "../generated/keysmith/v1/ListKeysResponse";
import type { RevokeRequest } from "../generated/keysmith/v1/RevokeRequest";
import type { RevokeResponse__Output } from "../generated/keysmith/v1/RevokeResponse";
import type { WatchKeysResponse__Output } from "../generated/keysmith/v1/WatchKeysResponse";

// dist/src/ -> examples/clients/typescript -> the repository's proto/.
const PROTO_ROOT = path.resolve(__dirname, "..", "..", "..", "..", "..", "proto");
// Generous: the CI machine is shared and slow; nothing here waits this long
// unless something is wrong.
const TIMEOUT_MS = 30_000;

/** The same options as `npm run generate`, so the types match. */
const LOADER_OPTIONS: protoLoader.Options = {
  includeDirs: [PROTO_ROOT],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

class Expectations {
  passed = 0;

  check(condition: boolean, what: string): void {
    if (!condition) {
      console.error(`FAILED: ${what}`);
      console.log(`typescript: ${this.passed} passed, 1 failed`);
      process.exit(1);
    }
    this.passed += 1;
    console.log(`ok: ${what}`);
  }
}

function timestamp(date: Date) {
  return { seconds: Math.floor(date.getTime() / 1000).toString(), nanos: 0 };
}

/** A unary call as a promise, with a deadline:
 * `await unary<Res>((options, done) => client.Method(request, metadata, options, done))`. */
function unary<Res>(
  start: (options: grpc.CallOptions, done: grpc.requestCallback<Res>) => grpc.ClientUnaryCall,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    start({ deadline: Date.now() + TIMEOUT_MS }, (error, response) => {
      if (error) reject(error);
      else resolve(response as Res);
    });
  });
}

/** The unary RPCs this program calls, as promises, each with the token. */
function unaryCalls(client: AccessServiceClient, metadata: grpc.Metadata) {
  return {
    issue: (request: IssueRequest) =>
      unary<IssueResponse__Output>((options, done) => client.Issue(request, metadata, options, done)),
    getKey: (request: GetKeyRequest) =>
      unary<AccessKey__Output>((options, done) => client.GetKey(request, metadata, options, done)),
    listKeys: (request: ListKeysRequest) =>
      unary<ListKeysResponse__Output>((options, done) => client.ListKeys(request, metadata, options, done)),
    revoke: (request: RevokeRequest) =>
      unary<RevokeResponse__Output>((options, done) => client.Revoke(request, metadata, options, done)),
  };
}

/** WatchKeys, its messages handed out one at a time. */
class Watch {
  private readonly queue: (WatchKeysResponse__Output | grpc.ServiceError)[] = [];
  private waiting: (() => void) | undefined;
  private readonly call: grpc.ClientReadableStream<WatchKeysResponse__Output>;

  constructor(client: AccessServiceClient, propertyId: string, reservationKey: string, metadata: grpc.Metadata) {
    this.call = client.WatchKeys({ propertyId, reservationKey }, metadata);
    this.call.on("data", (message: WatchKeysResponse__Output) => this.push(message));
    this.call.on("error", (error: grpc.ServiceError) => {
      // Our own cancel() ends the stream CANCELLED; anything else is handed
      // to the reader as it is.
      if (error.code !== grpc.status.CANCELLED) this.push(error);
    });
  }

  private push(item: WatchKeysResponse__Output | grpc.ServiceError): void {
    this.queue.push(item);
    this.waiting?.();
  }

  /** The next message, or undefined if none came within the timeout. */
  async next(): Promise<WatchKeysResponse__Output | undefined> {
    if (this.queue.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, TIMEOUT_MS);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = undefined;
    }
    const item = this.queue.shift();
    if (item instanceof Error) throw item;
    return item;
  }

  stop(): void {
    this.call.cancel();
  }
}

/** google.rpc.Status and its details, from the protos vendored in proto/google/rpc. */
const rpcTypes = (() => {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(PROTO_ROOT, target);
  root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
  return {
    status: root.lookupType("google.rpc.Status"),
    root,
  };
})();

interface ErrorDetails {
  errorInfo?: { reason: string; domain: string; metadata: Record<string, string> };
  badRequest?: { fieldViolations: { field: string; description: string }[] };
}

/** The ErrorInfo and BadRequest of an error, from its
 * grpc-status-details-bin trailer (a google.rpc.Status). */
function errorDetails(error: grpc.ServiceError): ErrorDetails {
  const [bytes] = error.metadata.get("grpc-status-details-bin");
  if (!(bytes instanceof Buffer)) return {};
  const status = rpcTypes.status.decode(bytes) as unknown as {
    details: { type_url: string; value: Uint8Array }[];
  };
  const found: ErrorDetails = {};
  for (const any of status.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf("/") + 1);
    const type = rpcTypes.root.lookupType(typeName);
    const detail = type.toObject(type.decode(any.value), { defaults: true });
    if (typeName === "google.rpc.ErrorInfo") found.errorInfo = detail as ErrorDetails["errorInfo"];
    if (typeName === "google.rpc.BadRequest") found.badRequest = detail as ErrorDetails["badRequest"];
  }
  return found;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      addr: { type: "string", default: "127.0.0.1:50051" },
      // Default: $KEYSMITH_TOKEN, else examples/keysmith.toml's front desk.
      token: { type: "string", default: process.env.KEYSMITH_TOKEN ?? "ks_demo_front_desk_not_for_production" },
      property: { type: "string", default: "demo-hotel" },
    },
  });
  const property = values.property;
  const expect = new Expectations();

  const definition = protoLoader.loadSync("keysmith/v1/access.proto", LOADER_OPTIONS);
  const proto = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  const client = new proto.keysmith.v1.AccessService(values.addr, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${values.token}`);
  const keysmith = unaryCalls(client, metadata);

  // One stay of this run: ids of its own, so that the program can run again
  // against the same keysmith.
  const run = randomUUID().slice(0, 12);
  const stay = `ts-stay-${run}`;
  const day = 24 * 3600 * 1000;
  const now = Math.floor(Date.now() / 1000) * 1000;
  const startsAt = timestamp(new Date(now + day));
  const endsAt = timestamp(new Date(now + 4 * day));

  // Watch the stay's keys before changing them; the first message says the
  // watch is established, so nothing issued after it is missed.
  const watch = new Watch(client, property, stay, metadata);
  const first = await watch.next();
  expect.check(first?.eventType === "KEY_EVENT_TYPE_WATCHING", "WatchKeys is established (KEY_EVENT_TYPE_WATCHING)");

  // Issue: a card for room 101 and the lobby, the first key of the stay.
  const issue: IssueRequest = {
    propertyId: property,
    requestId: `ts-issue-${run}`,
    holderId: `guest-${run}`,
    holderName: "Ada Guest",
    entranceIds: ["room-101", "lobby"],
    startsAt,
    endsAt,
    reservationKey: stay,
    modes: ["CREDENTIAL_MODE_CARD"],
  };
  const key = (await keysmith.issue(issue)).key as AccessKey__Output;
  expect.check(key.state === "KEY_STATE_ACTIVE", `Issue: key ${key.keyId} is ACTIVE`);
  expect.check(
    key.credentials.length === 1 && key.credentials[0].data === "cardData" && key.credentials[0].cardData !== "",
    "Issue: the card's data is in the answer (the token has keys.read_secrets)",
  );
  // A retry with the same request_id (a lost answer, say) returns the first
  // answer instead of issuing a second key.
  const retried = (await keysmith.issue(issue)).key as AccessKey__Output;
  expect.check(retried.keyId === key.keyId, "Issue retried with its request_id: the same key");

  // A co-guest's key joins the stay (room 101 only).
  const coGuest = (
    await keysmith.issue({
      propertyId: property,
      requestId: `ts-issue-co-guest-${run}`,
      holderId: `co-guest-${run}`,
      entranceIds: ["room-101"],
      startsAt,
      endsAt,
      reservationKey: stay,
      modes: ["CREDENTIAL_MODE_CARD"],
    })
  ).key as AccessKey__Output;
  expect.check(
    coGuest.entrances[0]?.behaviour === "RESERVATION_BEHAVIOUR_JOIN",
    "Issue: the co-guest's key joins the reservation",
  );

  // GetKey
  const got = await keysmith.getKey({ propertyId: property, keyId: key.keyId });
  expect.check(got.keyId === key.keyId && got.holderId === issue.holderId, "GetKey returns the key");

  // ListKeys, one key per page, following nextPageToken to the end.
  const listed: string[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await keysmith.listKeys({ propertyId: property, reservationKey: stay, pageSize: 1, pageToken });
    pages += 1;
    listed.push(...page.keys.map((k) => k.keyId));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  expect.check(
    JSON.stringify([...listed].sort()) === JSON.stringify([key.keyId, coGuest.keyId].sort()) && pages >= 2,
    `ListKeys: both keys of the stay, over ${pages} pages`,
  );

  // Revoke the stay: both keys in one change. Offline cards keep opening
  // until overridden or expired, and the answer says so.
  const revoked = await keysmith.revoke({ propertyId: property, requestId: `ts-revoke-${run}`, reservationKey: stay });
  expect.check(
    JSON.stringify(revoked.keys.map((k) => k.keyId).sort()) === JSON.stringify([key.keyId, coGuest.keyId].sort()) &&
      revoked.keys.every((k) => k.state === "KEY_STATE_REVOKED"),
    "Revoke by reservation_key: both keys REVOKED",
  );
  expect.check(
    revoked.warnings.some((w) => w.code === "OFFLINE_CREDENTIAL_STILL_VALID"),
    "Revoke: warned that offline cards stay valid until overridden",
  );

  // The watch saw every change, in order: two issued, two revoked.
  const seen: [string, string][] = [];
  while (seen.length < 4) {
    const event = await watch.next();
    if (event === undefined) break;
    seen.push([event.eventType as string, event.key?.keyId ?? ""]);
  }
  watch.stop();
  const issued = seen.filter(([t]) => t === "KEY_EVENT_TYPE_ISSUED").map(([, k]) => k);
  const revokedSeen = seen.filter(([t]) => t === "KEY_EVENT_TYPE_REVOKED").map(([, k]) => k);
  expect.check(
    JSON.stringify(issued) === JSON.stringify([key.keyId, coGuest.keyId]) &&
      JSON.stringify([...revokedSeen].sort()) === JSON.stringify([...issued].sort()) &&
      JSON.stringify(seen.map(([t]) => t)) ===
        JSON.stringify(["KEY_EVENT_TYPE_ISSUED", "KEY_EVENT_TYPE_ISSUED", "KEY_EVENT_TYPE_REVOKED", "KEY_EVENT_TYPE_REVOKED"]),
    `WatchKeys: both keys issued, then both revoked, in order (${JSON.stringify(seen)})`,
  );

  // A bad request: no holder, and a window that ends before it starts.
  // keysmith answers INVALID_ARGUMENT with a google.rpc.Status in the
  // grpc-status-details-bin trailer: an ErrorInfo (its reason is what a
  // program branches on) and a BadRequest naming every wrong field.
  try {
    await keysmith.issue({
      propertyId: property,
      entranceIds: ["lobby"],
      startsAt: endsAt,
      endsAt: startsAt,
      modes: ["CREDENTIAL_MODE_CARD"],
    });
    expect.check(false, "a bad Issue is refused");
  } catch (caught) {
    const error = caught as grpc.ServiceError;
    expect.check(error.code === grpc.status.INVALID_ARGUMENT, `a bad Issue is INVALID_ARGUMENT (${error.details})`);
    const { errorInfo, badRequest } = errorDetails(error);
    expect.check(
      errorInfo?.domain === "keysmith.dev" && errorInfo.reason === "FIELD_REQUIRED",
      `its ErrorInfo: domain keysmith.dev, reason FIELD_REQUIRED (${JSON.stringify(errorInfo)})`,
    );
    const fields = (badRequest?.fieldViolations ?? []).map((v) => v.field).sort();
    expect.check(
      JSON.stringify(fields) === JSON.stringify(["ends_at", "holder_id"]),
      `its BadRequest names holder_id and ends_at (${JSON.stringify(fields)})`,
    );
  }

  client.close();
  console.log(`typescript: ${expect.passed} passed, 0 failed`);
}

main().catch((error: unknown) => {
  console.error("FAILED:", error);
  console.log("typescript: 0 passed, 1 failed");
  process.exit(1);
});
