/**
 * End to end against a real broker (`isa-broker dev`), described by the environment
 * (`tests/sdk/conftest.py` provides it): skipped when ISA_GATEWAY_URL is not set.
 *
 * As the recipient: tokens, an encryption key, three subscriptions (an encrypted `v1` webhook
 * to a receiver on 127.0.0.1 — the reference receiver of `examples/receiver.ts` — a `v1a`
 * webhook, and the Kafka channel) plus the inbox. As the sender: a release notice, published
 * twice under one Idempotency-Key. Then the real deliveries: the webhooks verified and
 * decrypted, the record read from the agency topic and decrypted, the inbox drained, the duty
 * acknowledged, the deliveries and dead letters read, and two refusals mapped to errors.
 *
 * When ISA_SDK_E2E_REPORT names a file, the steps done are written to it as JSON.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import kafkajs from "kafkajs";

import {
  ConflictError,
  IsaBrokerClient,
  ValidationError,
  WebhookReceiver,
  dutyIds,
  generateEncryptionKey,
  openRecord,
  thumbprint,
  type BrokerKeys,
  type CloudEvent,
  type InboxEntry,
  type Opened,
  type ReceivedWebhook,
  type Subscription,
} from "@isa-broker/client";

import { releaseAlertHandler } from "../examples/receiver.js";

const ENV = process.env;
const GATEWAY = ENV["ISA_GATEWAY_URL"];
const STEPS: string[] = [];
const TIMEOUT_MS = 120_000;

function step(name: string): void {
  STEPS.push(name);
  const report = ENV["ISA_SDK_E2E_REPORT"];
  if (report) writeFileSync(report, JSON.stringify({ steps: STEPS }, null, 2));
}

function need(name: string): string {
  const value = ENV[name];
  assert.ok(value, `${name} is not set`);
  return value;
}

/** Resolves with the first value `probe` returns that is not undefined, polling. */
async function eventually<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("end to end with a real broker", { skip: GATEWAY ? false : "ISA_GATEWAY_URL is not set" }, () => {
  const party = ENV["ISA_RECIPIENT_PARTY"] ?? "";
  let sender: IsaBrokerClient;
  let recipient: IsaBrokerClient;
  let brokerKeys: BrokerKeys;
  let privateJwk: Record<string, unknown>;
  const subscriptions: Subscription[] = [];
  const requests: { path: string; headers: IncomingMessage["headers"] }[] = [];
  const plainWebhooks: ReceivedWebhook[] = [];
  const routes = new Map<string, (req: IncomingMessage, res: ServerResponse) => void>();
  const acted: CloudEvent[] = [];
  const server = createServer((req, res) => {
    const route = routes.get(req.url ?? "");
    if (route) route(req, res);
    else res.writeHead(404).end();
  });
  const records: kafkajs.KafkaMessage[] = [];
  let consumer: kafkajs.Consumer | undefined;
  let receiverUrl = "";

  before(async () => {
    sender = new IsaBrokerClient({
      baseUrl: need("ISA_GATEWAY_URL"),
      credentials: { clientId: need("ISA_SENDER_CLIENT_ID"), clientSecret: need("ISA_SENDER_CLIENT_SECRET") },
    });
    recipient = new IsaBrokerClient({
      baseUrl: need("ISA_GATEWAY_URL"),
      credentials: { clientId: need("ISA_RECIPIENT_CLIENT_ID"), clientSecret: need("ISA_RECIPIENT_CLIENT_SECRET") },
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    receiverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await consumer?.disconnect().catch(() => undefined);
    for (const s of subscriptions) await recipient.deleteSubscription(s.id).catch(() => undefined);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("obtains tokens for the sender and the recipient", { timeout: TIMEOUT_MS }, async () => {
    const [a, b] = await Promise.all([sender.tokens.token(), recipient.tokens.token()]);
    assert.match(a, /^ey/);
    assert.match(b, /^ey/);
    assert.equal(await recipient.tokens.token(), b, "the token is cached");
    step("tokens");
  });

  it("registers an encryption key and fetches the broker's delivery-signing keys", { timeout: TIMEOUT_MS }, async () => {
    const pair = await generateEncryptionKey({ kid: `sdk-ts-${randomUUID().slice(0, 8)}` });
    privateJwk = pair.privateJwk as Record<string, unknown>;
    const registered = await recipient.registerEncryptionKey(pair.publicJwk as Record<string, unknown>);
    assert.equal(registered.kid, pair.publicJwk.kid);
    assert.equal(registered.current, true);
    assert.equal(registered.thumbprint, await thumbprint(pair.publicJwk));
    brokerKeys = await recipient.brokerKeys();
    assert.ok(Object.keys(await brokerKeys.thumbprints()).length > 0);
    step("encryption_key");
  });

  it("subscribes: an encrypted v1 webhook, a v1a webhook, the Kafka channel and the inbox", { timeout: TIMEOUT_MS }, async () => {
    const encrypted = await recipient.createSubscription({
      message_types: ["release-notice"],
      channel: "webhook",
      webhook: { url: `${receiverUrl}/encrypted` },
      encrypt: true,
    });
    subscriptions.push(encrypted);
    assert.match(encrypted.secret ?? "", /^whsec_/);
    // the reference receiver: verifies, de-duplicates, decrypts, acknowledges the duty
    const handler = releaseAlertHandler({
      receiver: new WebhookReceiver({
        keys: [encrypted.secret!],
        decrypt: { privateKeys: [privateJwk], brokerKeys, recipient: party },
      }),
      broker: recipient,
      act: async (event) => {
        acted.push(event);
      },
      log: () => undefined,
    });
    routes.set("/encrypted", (req, res) => {
      requests.push({ path: "/encrypted", headers: req.headers });
      handler(req, res);
    });

    const signed = await recipient.createSubscription({
      message_types: ["release-notice"],
      webhook: { url: `${receiverUrl}/v1a` },
      signature_scheme: "v1a",
    });
    subscriptions.push(signed);
    assert.match(signed.public_key ?? "", /^whpk_/);
    const v1a = new WebhookReceiver({ keys: [signed.public_key!] });
    routes.set("/v1a", (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        requests.push({ path: "/v1a", headers: req.headers });
        v1a.receive(Buffer.concat(chunks), req.headers).then(
          (received) => {
            plainWebhooks.push(received);
            res.writeHead(204).end();
          },
          () => res.writeHead(401).end(),
        );
      });
    });

    const kafka = await recipient.createSubscription({ message_types: ["release-notice"], channel: "kafka" });
    subscriptions.push(kafka);
    assert.equal(kafka.kafka_topic, need("ISA_AGENCY_TOPIC"));

    const inbox = await recipient.createSubscription({ message_types: ["release-notice"], channel: "inbox" });
    subscriptions.push(inbox);

    const listed = await recipient.listSubscriptions();
    for (const s of subscriptions) assert.ok(listed.some((l) => l.id === s.id && l.status === "active"));

    // consume the agency topic from the start, before anything is published
    const credential = kafka.kafka_credential;
    const client = new kafkajs.Kafka({
      clientId: "isa-broker-sdk-e2e",
      brokers: need("ISA_KAFKA_BOOTSTRAP_SERVERS").split(","),
      logLevel: kafkajs.logLevel.ERROR,
      ...(credential && {
        sasl: { mechanism: "scram-sha-512" as const, username: credential.username, password: credential.password },
      }),
    });
    // a group of our own, named <party>.<anything>; short timeouts so that the group forms in
    // a few seconds on a single-node broker
    consumer = client.consumer({
      groupId: `${credential?.group_prefix ?? `${party}.`}sdk-e2e-${randomUUID().slice(0, 8)}`,
      rebalanceTimeout: 2000,
      sessionTimeout: 6000,
      heartbeatInterval: 500,
    });
    await consumer.connect();
    await consumer.subscribe({ topic: kafka.kafka_topic!, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        records.push(message);
      },
    });
    step("subscriptions");
  });

  let messageId = "";

  it("publishes the release notice as the sender, once under one Idempotency-Key", { timeout: TIMEOUT_MS }, async () => {
    const notice = JSON.parse(readFileSync(need("ISA_RELEASE_NOTICE_FILE"), "utf8")) as unknown;
    const key = randomUUID();
    const first = await sender.publish("release-notice", notice, { idempotencyKey: key, purposes: ["victim-safety"] });
    assert.equal(first.message.status, "accepted");
    assert.equal(first.replayed, false);
    assert.ok(first.message.recipients.some((r) => r.party === party), `${party} is not a recipient`);
    messageId = first.message.id;
    const again = await sender.publish("release-notice", notice, { idempotencyKey: key, purposes: ["victim-safety"] });
    assert.equal(again.replayed, true);
    assert.equal(again.message.id, messageId);
    step("publish");
  });

  it("receives, verifies and decrypts the real webhooks", { timeout: TIMEOUT_MS }, async () => {
    // the reference receiver verified, decrypted and handed on the event
    const event = await eventually("the encrypted webhook", () => acted.find((e) => e.id === messageId));
    assert.equal(event.isarecipient, party);
    assert.ok(event.data, "the projection is there");
    const request = requests.find((r) => r.path === "/encrypted" && r.headers["webhook-id"] === event.isadeliveryid);
    assert.ok(request, "it came as a webhook request with the delivery id as webhook-id");
    assert.equal(request.headers["content-type"], "application/jose", "encrypted");
    assert.match(String(request.headers["webhook-signature"]), /^v1,/);

    const plain = await eventually("the v1a webhook", () => plainWebhooks.find((w) => w.event.id === messageId));
    assert.equal(plain.encrypted, false);
    assert.equal(plain.event.isadeliveryid, plain.deliveryId);
    const v1aRequest = requests.find((r) => r.path === "/v1a" && r.headers["webhook-id"] === plain.deliveryId);
    assert.match(String(v1aRequest?.headers["webhook-signature"]), /^v1a,/);
    step("webhook");
  });

  it("reads the real record from the agency topic and decrypts it", { timeout: TIMEOUT_MS }, async () => {
    let opened: Opened | undefined;
    await eventually("the agency-topic record", async () => {
      for (const record of records) {
        if (record.headers?.["isa_message_id"]?.toString() !== messageId) continue;
        opened = await openRecord(record.value, record.headers, { privateKeys: [privateJwk], brokerKeys, recipient: party });
        return true;
      }
      return undefined;
    });
    assert.ok(opened);
    assert.equal(opened.event.id, messageId);
    assert.equal(opened.event.isarecipient, party);
    assert.equal(opened.binding.recipient, party);
    assert.equal(opened.kid, privateJwk["kid"]);
    step("kafka_record");
  });

  let dutyEvent: CloudEvent | undefined;

  it("drains the inbox, acknowledging as it goes", { timeout: TIMEOUT_MS }, async () => {
    const seen: InboxEntry[] = [];
    const stream = recipient.inbox({ wait: 5 });
    for await (const entry of stream) {
      seen.push(entry);
      if (entry.kind === "message" && entry.event.id === messageId) break;
    }
    const mine = seen.find((e) => e.kind === "message" && e.event.id === messageId);
    assert.ok(mine, "the message reached the inbox");
    assert.ok(mine.delivery_id);
    await stream.ack(mine);
    // and what is left, to the end
    for await (const entry of recipient.inbox({ untilEmpty: true })) seen.push(entry);
    const page = await recipient.readInbox();
    assert.equal(page.entries.length, 0, "nothing left after the acknowledged cursor");
    assert.ok(page.acknowledged >= mine.cursor);
    dutyEvent = mine.event;
    step("inbox");
  });

  it("acknowledges the duty the delivery carries", { timeout: TIMEOUT_MS }, async (t) => {
    const ids = dutyIds(dutyEvent ?? ({} as CloudEvent));
    if (ids.length === 0) {
      t.skip("the delivery carries no duty");
      return;
    }
    for (const id of ids) {
      const duty = await recipient.acknowledgeDuty(id); // the reference receiver may have already: safe to repeat
      assert.equal(duty.status, "acknowledged");
      assert.equal((await recipient.getDuty(id)).status, "acknowledged");
    }
    step("duty_ack");
  });

  it("reads its deliveries and dead letters, and a replay of a delivered one is refused", { timeout: TIMEOUT_MS }, async () => {
    const deliveries = await eventually("every delivery settled", async () => {
      const list = await recipient.listDeliveries({ messageId });
      return list.length >= 4 && list.every((d) => d.status === "delivered") ? list : undefined;
    });
    assert.deepEqual(new Set(deliveries.map((d) => d.channel)), new Set(["webhook", "kafka", "inbox"]));
    const one = await recipient.getDelivery(deliveries[0]!.id);
    assert.ok(Array.isArray(one.history));
    const dead = await recipient.listDeadLetters({ subscriptionId: subscriptions[0]!.id });
    assert.deepEqual(dead, []);
    await assert.rejects(recipient.replayDeadLetter(deliveries[0]!.id), ConflictError);
    step("deliveries");
  });

  it("maps a refusal to a typed error with its field pointers", { timeout: TIMEOUT_MS }, async () => {
    await assert.rejects(sender.publish("release-notice", { person: { prison_number: "A1234BC" } }), (e: unknown) => {
      assert.ok(e instanceof ValidationError);
      assert.equal(e.code, "validation_failed");
      assert.ok(e.fields.length > 0);
      return true;
    });
    step("problem");
  });
});
