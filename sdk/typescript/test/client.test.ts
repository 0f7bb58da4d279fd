/** The HTTP client against a stand-in broker: tokens, retries, publishing, the inbox. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { exportJWK, generateKeyPair, jwtVerify } from "jose";

import {
  ASSERTION_TYPE,
  IsaBrokerClient,
  RateLimitedError,
  TokenError,
  TransportError,
  UnauthenticatedError,
  UnavailableError,
  type InboxEntry,
} from "@isa-broker/client";

import { TOKEN_ANSWER, fakeBroker, type Recorded } from "./helpers.js";

const CLIENT_ID = "eastborough-vawg.8b7e6d5c4a3f";
const SECRET = "cs_synthetic+secret/with:odd chars";

function basic(request: Recorded): [string, string] {
  const header = String(request.headers.authorization ?? "");
  assert.match(header, /^Basic /);
  const [id, secret] = Buffer.from(header.slice(6), "base64").toString().split(":") as [string, string];
  return [decodeURIComponent(id), decodeURIComponent(secret)];
}

function problem(status: number, code: string, extra: Record<string, unknown> = {}) {
  return { type: `https://isa-broker.example/problems/${code}`, title: code, status, detail: code, code, ...extra };
}

describe("tokens", () => {
  it("client_secret_basic: one token for many calls, a new one shortly before it expires", async () => {
    let issued = 0;
    const broker = await fakeBroker((r) => {
      if (r.path === "/oauth/token") return { status: 200, body: { ...TOKEN_ANSWER, access_token: `at-${++issued}` } };
      return { status: 200, body: [] };
    });
    let now = 1_000_000;
    try {
      const client = new IsaBrokerClient({
        baseUrl: broker.url + "/",
        credentials: { clientId: CLIENT_ID, clientSecret: SECRET },
        scope: "deliveries:read inbox:read",
        clock: () => now,
      });
      await Promise.all([client.listDeliveries(), client.listDeliveries(), client.listDeadLetters()]);
      assert.equal(issued, 1, "concurrent calls share one token request");
      const tokenRequest = broker.requests.find((r) => r.path === "/oauth/token")!;
      assert.deepEqual(basic(tokenRequest), [CLIENT_ID, SECRET]);
      const form = new URLSearchParams(tokenRequest.body);
      assert.equal(form.get("grant_type"), "client_credentials");
      assert.equal(form.get("scope"), "deliveries:read inbox:read");
      assert.equal(tokenRequest.headers["content-type"], "application/x-www-form-urlencoded");
      for (const r of broker.requests.filter((r) => r.path !== "/oauth/token")) assert.equal(r.headers.authorization, "Bearer at-1");

      now += 269_000; // 300 s tokens are refreshed 30 s before they expire
      await client.listDeliveries();
      assert.equal(issued, 1);
      now += 1_000;
      await client.listDeliveries();
      assert.equal(issued, 2);
      assert.equal(broker.requests.at(-1)!.headers.authorization, "Bearer at-2");
    } finally {
      await broker.close();
    }
  });

  it("fetches a new token once after a 401, then gives up", async () => {
    let issued = 0;
    let refuse = 1;
    const broker = await fakeBroker((r) => {
      if (r.path === "/oauth/token") return { status: 200, body: { ...TOKEN_ANSWER, access_token: `at-${++issued}` } };
      if (refuse-- > 0) return { status: 401, headers: { "content-type": "application/problem+json" }, body: problem(401, "unauthenticated") };
      return { status: 200, body: { id: "dut_1", status: "open" } };
    });
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      assert.equal((await client.getDuty("dut_1")).status, "open");
      assert.equal(issued, 2);
      refuse = 2;
      await assert.rejects(client.getDuty("dut_1"), UnauthenticatedError);
      assert.equal(issued, 3);
    } finally {
      await broker.close();
    }
  });

  it("throws the token endpoint's OAuth error", async () => {
    const broker = await fakeBroker(() => ({
      status: 429,
      headers: { "retry-after": "7" },
      body: { error: "temporarily_unavailable", error_description: "too many token requests" },
    }));
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      await assert.rejects(client.tokens.token(), (e: unknown) => {
        assert.ok(e instanceof TokenError);
        assert.deepEqual([e.status, e.code, e.description, e.retryAfter], [429, "temporarily_unavailable", "too many token requests", 7]);
        return true;
      });
    } finally {
      await broker.close();
    }
  });

  it("private_key_jwt: a fresh signed assertion for each token, no password", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: "vawg-2026-01" };
    const jtis = new Set<string>();
    let tokenEndpoint = "";
    const broker = await fakeBroker(async (r) => {
      if (r.path !== "/oauth/token") return { status: 200, body: [] };
      assert.equal(r.headers.authorization, undefined);
      const form = new URLSearchParams(r.body);
      assert.equal(form.get("client_assertion_type"), ASSERTION_TYPE);
      const { payload, protectedHeader } = await jwtVerify(form.get("client_assertion")!, publicKey, {
        issuer: CLIENT_ID,
        subject: CLIENT_ID,
        audience: tokenEndpoint,
        algorithms: ["ES256"],
      });
      assert.equal(protectedHeader.kid, "vawg-2026-01");
      assert.equal(payload.exp! - payload.iat!, 60);
      assert.ok(payload.jti && !jtis.has(payload.jti));
      jtis.add(payload.jti);
      return { status: 200, body: { ...TOKEN_ANSWER, expires_in: 1 } }; // refreshed at once
    });
    tokenEndpoint = `${broker.url}/oauth/token`;
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, privateKey: privateJwk } });
      await client.listSubscriptions();
      await new Promise((r) => setTimeout(r, 600));
      await client.listSubscriptions();
      assert.equal(jtis.size, 2);
    } finally {
      await broker.close();
    }
  });
});

describe("requests", () => {
  it("publishes with an Idempotency-Key and purposes, and repeats it under the same key after a 503", async () => {
    let attempts = 0;
    const broker = await fakeBroker((r) => {
      if (r.path === "/oauth/token") return { status: 200, body: TOKEN_ANSWER };
      if (++attempts === 1) return { status: 503, headers: { "content-type": "application/problem+json", "retry-after": "0" }, body: problem(503, "unavailable") };
      return { status: 202, headers: attempts > 2 ? { "idempotent-replayed": "true" } : {}, body: { id: "m-1", status: "accepted", recipients: [] } };
    });
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      const first = await client.publish("release-notice", { person: {} }, { purposes: ["resettlement", "victim-safety"] });
      assert.equal(first.message.id, "m-1");
      assert.equal(first.replayed, false);
      const sent = broker.requests.filter((r) => r.path === "/v1/messages/release-notice");
      assert.equal(sent.length, 2);
      for (const r of sent) {
        assert.equal(r.headers["idempotency-key"], first.idempotencyKey);
        assert.deepEqual(r.query.getAll("purpose"), ["resettlement", "victim-safety"]);
        assert.equal(r.headers["content-type"], "application/json");
        assert.deepEqual(JSON.parse(r.body), { person: {} });
      }
      const again = await client.publish("release-notice", { person: {} }, { idempotencyKey: first.idempotencyKey });
      assert.equal(again.replayed, true);
    } finally {
      await broker.close();
    }
  });

  it("waits for Retry-After, but throws a wait longer than it allows", async () => {
    let calls = 0;
    const broker = await fakeBroker((r) => {
      if (r.path === "/oauth/token") return { status: 200, body: TOKEN_ANSWER };
      calls++;
      const wait = r.query.get("limit") === "1" ? 0 : 120;
      if (calls % 2 === 1) return { status: 429, headers: { "content-type": "application/problem+json", "retry-after": String(wait) }, body: problem(429, "rate_limited", { retry_after: wait }) };
      return { status: 200, body: [] };
    });
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      assert.deepEqual(await client.listDeliveries({ limit: 1 }), []);
      calls = 0;
      await assert.rejects(client.listDeliveries(), (e: unknown) => e instanceof RateLimitedError && e.retryAfter === 120);
      // a request that is not safe to repeat is never repeated
      calls = 0;
      await assert.rejects(client.createSubscription({ message_types: ["release-notice"], channel: "inbox" }), RateLimitedError);
      assert.equal(calls, 1);
    } finally {
      await broker.close();
    }
  });

  it("throws a TransportError when nothing answers, and a ServerError for a 503 without a body", async () => {
    const broker = await fakeBroker((r) => (r.path === "/oauth/token" ? { status: 200, body: TOKEN_ANSWER } : { status: 503 }));
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET }, maxRetries: 0 });
      await assert.rejects(client.listDeliveries(), UnavailableError);
    } finally {
      await broker.close();
    }
    const gone = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET }, maxRetries: 0 });
    await assert.rejects(gone.tokens.token(), TransportError);
  });

  it("maps filters to the broker's parameters and bodies", async () => {
    const broker = await fakeBroker((r) => {
      if (r.path === "/oauth/token") return { status: 200, body: TOKEN_ANSWER };
      if (r.path === "/v1/duties") return { status: 200, body: { duties: [], next_offset: null } };
      return { status: 200, body: r.path.endsWith("replay") ? { replayed: [] } : {} };
    });
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      await client.listDeliveries({ status: "retrying", subscriptionId: "s-1", messageId: "m-1", since: new Date("2026-11-25T00:00:00Z"), limit: 50 });
      await client.replayDeadLetters({ subscriptionId: "s-1", until: "2026-11-27T00:00:00Z" });
      await client.acknowledgeDuty("dut_1", "victim_contacted");
      await client.listDuties({ status: "open" });
      await client.rotateSecret("s-1", 3600);
      const [list, replay, ack, duties, rotate] = broker.requests.filter((r) => r.path !== "/oauth/token");
      assert.deepEqual(Object.fromEntries(list!.query), {
        status: "retrying",
        subscription_id: "s-1",
        message_id: "m-1",
        since: "2026-11-25T00:00:00.000Z",
        limit: "50",
      });
      assert.deepEqual([replay!.method, replay!.path, JSON.parse(replay!.body)], ["POST", "/v1/dead-letters/replay", { subscription_id: "s-1", until: "2026-11-27T00:00:00Z" }]);
      assert.deepEqual([ack!.path, JSON.parse(ack!.body)], ["/v1/duties/dut_1/acknowledge", { action: "victim_contacted" }]);
      assert.equal(duties!.query.get("status"), "open");
      assert.deepEqual([rotate!.path, JSON.parse(rotate!.body)], ["/v1/subscriptions/s-1/rotate-secret", { overlap_seconds: 3600 }]);
    } finally {
      await broker.close();
    }
  });
});

describe("the inbox", () => {
  function entry(cursor: number): InboxEntry {
    return {
      cursor,
      kind: "message",
      delivery_id: `msg_${cursor}`,
      event: { specversion: "1.0", id: `m-${cursor}`, source: "urn:isa-broker:party:hmp-northgate", type: "org.isa-broker.release-notice.v1" },
    };
  }

  /** An inbox holding `cursors`, read `limit` at a time, that records acknowledgements. */
  async function inbox(cursors: number[]) {
    let acknowledged = 0;
    const broker = await fakeBroker(async (r) => {
      if (r.path === "/oauth/token") return { status: 200, body: TOKEN_ANSWER };
      if (r.path === "/v1/inbox/ack") {
        const previous = acknowledged;
        acknowledged = Math.max(acknowledged, JSON.parse(r.body).cursor);
        return { status: 200, body: { previous, acknowledged } };
      }
      const after = Number(r.query.get("after") ?? acknowledged);
      const limit = Number(r.query.get("limit") ?? 100);
      const entries = cursors.filter((c) => c > after).slice(0, limit).map(entry);
      if (entries.length === 0 && Number(r.query.get("wait") ?? 0) > 0) await new Promise((res) => setTimeout(res, 200));
      return { status: 200, body: { entries, next_cursor: entries.at(-1)?.cursor ?? after, acknowledged } };
    });
    return { broker, acknowledged: () => acknowledged };
  }

  it("yields every entry in order, acknowledging each page once the loop is past it, until empty", async () => {
    const { broker, acknowledged } = await inbox([3, 5, 9, 12, 20]);
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      const seen: number[] = [];
      const acks: number[] = [];
      for await (const e of client.inbox({ limit: 2, untilEmpty: true })) {
        seen.push(e.cursor);
        acks.push(acknowledged());
      }
      assert.deepEqual(seen, [3, 5, 9, 12, 20]);
      assert.deepEqual(acks, [0, 0, 5, 5, 12], "a page is acknowledged when the loop asks for the next entry");
      assert.equal(acknowledged(), 20);
      const reads = broker.requests.filter((r) => r.path === "/v1/inbox");
      assert.deepEqual(reads.map((r) => r.query.get("after")), [null, "5", "12", "20"]);
      assert.ok(reads.every((r) => r.query.get("limit") === "2" && !r.query.has("wait")));
    } finally {
      await broker.close();
    }
  });

  it("acknowledges nothing by itself in manual mode; ack() moves the cursor", async () => {
    const { broker, acknowledged } = await inbox([1, 2, 3]);
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      const stream = client.inbox({ ack: "manual", untilEmpty: true });
      for await (const e of stream) {
        if (e.cursor === 2) await stream.ack(e);
      }
      assert.equal(acknowledged(), 2);
      assert.equal(stream.position, 3);
      // the next reader starts after the acknowledged cursor
      const rest: number[] = [];
      for await (const e of client.inbox({ untilEmpty: true })) rest.push(e.cursor);
      assert.deepEqual(rest, [3]);
    } finally {
      await broker.close();
    }
  });

  it("long-polls while empty and ends quietly when aborted", async () => {
    const { broker } = await inbox([]);
    try {
      const client = new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: CLIENT_ID, clientSecret: SECRET } });
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 500);
      const seen: InboxEntry[] = [];
      for await (const e of client.inbox({ wait: 1, signal: controller.signal })) seen.push(e);
      assert.deepEqual(seen, []);
      const reads = broker.requests.filter((r) => r.path === "/v1/inbox");
      assert.ok(reads.length >= 2, "it read again while empty");
      assert.ok(reads.every((r) => r.query.get("wait") === "1"));
    } finally {
      await broker.close();
    }
  });
});
