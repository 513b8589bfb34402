// Seam's own JavaScript SDK (@seamapi/http) as a client of fake-seam, and
// Seam's webhook SDK (@seamapi/webhook) verifying the fake's deliveries.
//
//   node check.mjs path/to/fake-seam
//
// Starts the fake binary on a free loopback port (its demo workspace, no
// delays), points SeamHttp at it with `endpoint`, and makes each call the
// driver and an operator make, with and without arguments, as the SDK sends
// them (GET with a query string, PATCH, POST with or without a body). Every
// call must succeed, and at the end the fake must have recorded no answer,
// event or request outside Seam's API definition (it checks each one
// against the definition as it sends or receives it:
// /_fake/contract_violations). Stops the fake and its own server on every
// way out. Exits 0 and prints "N passed, 0 failed" when all is well.

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { once } from "node:events";
import { createInterface } from "node:readline";

import { SeamHttp, SeamHttpInvalidInputError } from "@seamapi/http/connect";
import { SeamWebhook } from "@seamapi/webhook";

const binary = process.argv[2];
if (!binary) {
  console.error("usage: node check.mjs path/to/fake-seam");
  process.exit(2);
}

let passed = 0;
let failed = 0;
const check = async (name, fn) => {
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
};
const expect = (cond, what) => {
  if (!cond) throw new Error(what);
};

// Webhook deliveries, received on a loopback port of our own.
const deliveries = [];
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    deliveries.push({ headers: req.headers, body });
    res.writeHead(204).end();
  });
});
receiver.listen(0, "127.0.0.1");
await once(receiver, "listening");
const hookUrl = `http://127.0.0.1:${receiver.address().port}/hook`;

// The fake, on a free port, its demo workspace seeded; it prints what it
// seeded, then "ready".
const fake = spawn(
  binary,
  [
    "--listen", "127.0.0.1:0",
    "--issue-delay-ms", "0",
    "--delete-delay-ms", "0",
    "--encode-delay-ms", "0",
    "--webhook-url", hookUrl,
  ],
  { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn" } },
);
const stop = () => {
  if (fake.exitCode === null) fake.kill("SIGTERM");
  receiver.close();
};
process.on("exit", stop);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    stop();
    process.exit(1);
  });
}
const banner = {};
const lines = createInterface({ input: fake.stdout });
const started = setTimeout(() => {
  console.error("fake-seam did not say ready within 30 s");
  process.exit(1);
}, 30_000);
for await (const line of lines) {
  const url = line.match(/^fake Seam Connect: (\S+)/);
  if (url) banner.endpoint = url[1];
  const secret = line.match(/^webhook \S+ secret (\S+)/);
  if (secret) banner.secret = secret[1];
  const system = line.match(/^acs system visionline .*: (\S+)$/);
  if (system) banner.visionline = system[1];
  if (line === "ready") break;
}
clearTimeout(started);
expect(banner.endpoint && banner.secret && banner.visionline, `banner: ${JSON.stringify(banner)}`);

const seam = SeamHttp.fromApiKey("seam_test_demo", { endpoint: banner.endpoint });
const control = async (route) => {
  const r = await fetch(`${banner.endpoint}/_fake/${route}`, { method: "POST" });
  return r.json();
};
const future = (days) => new Date(Date.UTC(2030, 4, 10 + days, 15)).toISOString();

let entrances, room, encoder, identity, grant, card;

await check("acs.entrances.list()", async () => {
  entrances = await seam.acs.entrances.list();
  expect(entrances.length === 6, `${entrances.length} entrances`);
  room = entrances.find((e) => e.display_name === "Room 101");
  expect(room?.can_belong_to_reservation === true, "Room 101 takes reservations");
});
await check("acs.entrances.list({ acs_system_id, limit })", async () => {
  const some = await seam.acs.entrances.list({ acs_system_id: banner.visionline, limit: 2 });
  expect(some.length === 2, `${some.length} entrances`);
});
await check("spaces.list() and spaces.list({ space_key })", async () => {
  const all = await seam.spaces.list();
  expect(all.length === 6, `${all.length} spaces`);
  const [one] = await seam.spaces.list({ space_key: "room-101" });
  expect(room.space_ids.includes(one.space_id), "Room 101 is in space room-101");
});
await check("acs.encoders.list({ acs_system_id }) and ({ acs_encoder_ids })", async () => {
  [encoder] = await seam.acs.encoders.list({ acs_system_id: banner.visionline });
  expect(encoder?.display_name === "Front desk encoder", JSON.stringify(encoder));
  const byId = await seam.acs.encoders.list({ acs_encoder_ids: [encoder.acs_encoder_id] });
  expect(byId.length === 1, `${byId.length} encoders`);
});
await check("acs.encoders.list() is refused, as Seam's schema requires a filter", async () => {
  try {
    await seam.acs.encoders.list();
    throw new Error("accepted");
  } catch (e) {
    expect(e instanceof SeamHttpInvalidInputError, `${e}`);
  }
});
await check("userIdentities.create(), .create({ ... })", async () => {
  await seam.userIdentities.create();
  identity = await seam.userIdentities.create({
    user_identity_key: "sdk-guest",
    full_name: "SDK Guest",
    email_address: "sdk.guest@example.com",
  });
  expect(identity.user_identity_key === "sdk-guest", JSON.stringify(identity));
});
await check("userIdentities.get by id and by key", async () => {
  const byId = await seam.userIdentities.get({ user_identity_id: identity.user_identity_id });
  const byKey = await seam.userIdentities.get({ user_identity_key: "sdk-guest" });
  expect(byId.user_identity_id === byKey.user_identity_id, "the same identity");
});
await check("userIdentities.list(), .list({ search })", async () => {
  const all = await seam.userIdentities.list();
  expect(all.length === 2, `${all.length} identities`);
  const found = await seam.userIdentities.list({ search: "SDK" });
  expect(found.length === 1, `${found.length} found`);
});
await check("accessGrants.create", async () => {
  grant = await seam.accessGrants.create({
    user_identity_id: identity.user_identity_id,
    acs_entrance_ids: [room.acs_entrance_id],
    starts_at: future(0),
    ends_at: future(4),
    requested_access_methods: [{ mode: "card" }, { mode: "mobile_key" }],
    reservation_key: "sdk-stay-1",
    access_grant_key: "sdk-grant-1",
  });
  expect(grant.access_method_ids.length === 2, JSON.stringify(grant));
});
await check("accessGrants.get by id and by key", async () => {
  const byId = await seam.accessGrants.get({ access_grant_id: grant.access_grant_id });
  const byKey = await seam.accessGrants.get({ access_grant_key: "sdk-grant-1" });
  expect(byId.access_grant_id === byKey.access_grant_id, "the same grant");
});
await check("accessGrants.list(), .list({ reservation_key })", async () => {
  expect((await seam.accessGrants.list()).length === 1, "one grant");
  const mine = await seam.accessGrants.list({ reservation_key: "sdk-stay-1" });
  expect(mine.length === 1, `${mine.length} grants`);
});
await check("accessMethods.list, .get", async () => {
  // Issued in the background, at once: wait until they are.
  let methods = [];
  for (let i = 0; i < 50; i += 1) {
    methods = await seam.accessMethods.list({ access_grant_id: grant.access_grant_id });
    if (methods.length === 2 && methods.every((m) => m.is_issued)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(methods.every((m) => m.is_issued), JSON.stringify(methods));
  card = methods.find((m) => m.mode === "card");
  const got = await seam.accessMethods.get({ access_method_id: card.access_method_id });
  expect(got.is_encoding_required === true, JSON.stringify(got));
});
let attempt;
await check("accessMethods.encode with waitForActionAttempt", async () => {
  attempt = await seam.accessMethods.encode(
    { access_method_id: card.access_method_id, acs_encoder_id: encoder.acs_encoder_id },
    { waitForActionAttempt: { pollingInterval: 100, timeout: 10_000 } },
  );
  expect(attempt.status === "success", JSON.stringify(attempt));
});
await check("actionAttempts.get, .list(), .list({ action_attempt_ids })", async () => {
  const got = await seam.actionAttempts.get({ action_attempt_id: attempt.action_attempt_id });
  expect(got.status === "success", JSON.stringify(got));
  expect((await seam.actionAttempts.list()).length === 1, "one attempt");
  const listed = await seam.actionAttempts.list({ action_attempt_ids: [attempt.action_attempt_id] });
  expect(listed.length === 1, `${listed.length} attempts`);
});
await check("accessGrants.update (PATCH)", async () => {
  await seam.accessGrants.update({ access_grant_id: grant.access_grant_id, ends_at: future(5) });
  const now = await seam.accessGrants.get({ access_grant_id: grant.access_grant_id });
  expect(now.ends_at === future(5), `${now.ends_at} vs ${future(5)}`);
});
await check("events.list({ since }), .list({ since, event_type })", async () => {
  const all = await seam.events.list({ since: "2000-01-01T00:00:00Z" });
  expect(all.length > 0, "events");
  const issued = await seam.events.list({
    since: "2000-01-01T00:00:00Z",
    event_type: "access_method.issued",
  });
  expect(issued.length === 2, `${issued.length} issued`);
  expect(issued.every((e) => Array.isArray(e.access_grant_ids)), "grants named in arrays");
});
await check("accessGrants.delete", async () => {
  await seam.accessGrants.delete({ access_grant_id: grant.access_grant_id });
  for (let i = 0; i < 50; i += 1) {
    if ((await seam.accessGrants.list()).length === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the grant is still there");
});
await check("webhooks verify with @seamapi/webhook", async () => {
  const { deliveries: sent } = await control("deliveries");
  const expected = sent.filter((d) => d.attempt === 1 && d.outcome === "delivered").length;
  for (let i = 0; i < 50 && deliveries.length < expected; i += 1) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(deliveries.length > 0 && deliveries.length >= expected, `${deliveries.length} of ${expected}`);
  const webhook = new SeamWebhook(banner.secret);
  for (const d of deliveries) {
    const event = webhook.verify(d.body, d.headers);
    expect(typeof event.event_type === "string", d.body);
  }
  const tampered = deliveries[0];
  try {
    webhook.verify(tampered.body.replace("event_id", "event_jd"), tampered.headers);
    throw new Error("a tampered delivery verified");
  } catch (e) {
    expect(e.name === "WebhookVerificationError", `${e}`);
  }
});
await check("every answer, event and request within Seam's definition", async () => {
  const { contract_violations: broken } = await control("contract_violations");
  expect(broken.length === 0, JSON.stringify(broken, null, 2));
});

stop();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
