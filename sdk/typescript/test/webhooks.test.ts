/** Webhook verification beyond the shared vectors: the clock and tolerance, header shapes,
 * key validation, rotation, and the receiver that decrypts. */

import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { describe, it } from "node:test";

import { Webhook } from "standardwebhooks";

import {
  ConfigurationError,
  MisroutedError,
  WebhookReceiver,
  WebhookVerificationError,
  WebhookVerifier,
  type JsonWebKeySet,
} from "@isa-broker/client";

import { vectors, type RecordVectors } from "./helpers.js";

const SECRET = "whsec_" + Buffer.from("a synthetic secret for these tests only").toString("base64");
const OTHER = "whsec_" + Buffer.from("another synthetic secret").toString("base64");
const BODY = JSON.stringify({ specversion: "1.0", id: "m-1", source: "urn:isa-broker:party:hmp-northgate", type: "org.isa-broker.release-notice.v1" });

function v1(secret: string, id: string, timestamp: number, body: string | Uint8Array): string {
  return new Webhook(secret).sign(id, new Date(timestamp * 1000), body);
}

function ed25519(): { whpk: string; sign: (id: string, ts: number, body: string) => string } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  return {
    whpk: "whpk_" + raw.toString("base64"),
    sign: (id, ts, body) => "v1a," + sign(null, Buffer.from(`${id}.${ts}.${body}`), privateKey).toString("base64"),
  };
}

function headers(id: string, ts: number, signature: string): Record<string, string> {
  return { "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": signature };
}

const NOW = 1_768_469_400;

describe("WebhookVerifier", () => {
  it("verifies against the wall clock by default, within five minutes either way", () => {
    const now = Math.floor(Date.now() / 1000);
    const verifier = new WebhookVerifier(SECRET);
    assert.equal(verifier.toleranceSeconds, 300);
    for (const ts of [now, now - 299, now + 299]) {
      assert.equal(verifier.verify(BODY, headers("msg_1", ts, v1(SECRET, "msg_1", ts, BODY))).scheme, "v1");
    }
    const old = now - 3600;
    assert.throws(() => verifier.verify(BODY, headers("msg_1", old, v1(SECRET, "msg_1", old, BODY))), { kind: "timestamp" });
  });

  it("takes its tolerance and clock from the options", () => {
    const verifier = new WebhookVerifier([SECRET], { toleranceSeconds: 10, clock: () => (NOW + 10) * 1000 });
    verifier.verify(BODY, headers("msg_1", NOW, v1(SECRET, "msg_1", NOW, BODY)));
    const late = new WebhookVerifier([SECRET], { toleranceSeconds: 10, clock: () => (NOW + 11) * 1000 });
    assert.throws(() => late.verify(BODY, headers("msg_1", NOW, v1(SECRET, "msg_1", NOW, BODY))), WebhookVerificationError);
  });

  it("refuses a missing or malformed timestamp as a timestamp error, a missing id as a signature error", () => {
    const verifier = new WebhookVerifier(SECRET, { clock: () => NOW * 1000 });
    const good = headers("msg_1", NOW, v1(SECRET, "msg_1", NOW, BODY));
    for (const stamp of [undefined, "", "abc", "1768469400.5", "-1768469400"]) {
      const h: Record<string, string> = { ...good };
      if (stamp === undefined) delete h["webhook-timestamp"];
      else h["webhook-timestamp"] = stamp;
      assert.throws(() => verifier.verify(BODY, h), { kind: "timestamp" }, String(stamp));
    }
    const noId: Record<string, string> = { ...good };
    delete noId["webhook-id"];
    assert.throws(() => verifier.verify(BODY, noId), { kind: "signature" });
    const noSignature: Record<string, string> = { ...good };
    delete noSignature["webhook-signature"];
    assert.throws(() => verifier.verify(BODY, noSignature), { kind: "signature" });
  });

  it("reads Node's header object, a fetch Headers and header pairs alike", () => {
    const verifier = new WebhookVerifier(SECRET, { clock: () => NOW * 1000 });
    const h = headers("msg_1", NOW, v1(SECRET, "msg_1", NOW, BODY));
    verifier.verify(BODY, { ...h, "webhook-signature": [h["webhook-signature"]!] });
    verifier.verify(BODY, new Headers(h));
    verifier.verify(BODY, Object.entries(h));
  });

  it("accepts any key of a rotation, and v1 and v1a keys together", () => {
    const pair = ed25519();
    const both = `${v1(OTHER, "msg_2", NOW, BODY)} ${v1(SECRET, "msg_2", NOW, BODY)}`;
    for (const keys of [[SECRET], [OTHER], [OTHER, SECRET], [pair.whpk, SECRET]]) {
      new WebhookVerifier(keys, { clock: () => NOW * 1000 }).verify(BODY, headers("msg_2", NOW, both));
    }
    const signed = `${v1(OTHER, "msg_2", NOW, BODY)} ${pair.sign("msg_2", NOW, BODY)}`;
    const verified = new WebhookVerifier([SECRET, pair.whpk], { clock: () => NOW * 1000 }).verify(BODY, headers("msg_2", NOW, signed));
    assert.equal(verified.scheme, "v1a");
    assert.throws(
      () => new WebhookVerifier([SECRET], { clock: () => NOW * 1000 }).verify(BODY, headers("msg_2", NOW, signed)),
      { kind: "signature" },
    );
  });

  it("refuses keys it cannot use", () => {
    assert.throws(() => new WebhookVerifier([]), ConfigurationError);
    assert.throws(() => new WebhookVerifier("whsk_" + Buffer.alloc(32, 1).toString("base64")), ConfigurationError);
    assert.throws(() => new WebhookVerifier("whsec_not*base64"), ConfigurationError);
    assert.throws(() => new WebhookVerifier("whsec_"), ConfigurationError);
    assert.throws(() => new WebhookVerifier("whpk_" + Buffer.alloc(31, 1).toString("base64")), ConfigurationError);
    assert.throws(() => new WebhookVerifier(SECRET, { toleranceSeconds: -1 }), ConfigurationError);
  });
});

describe("WebhookReceiver", () => {
  const records = vectors<RecordVectors>("records.json");
  const sealed = records.cases.find((c) => c.name === "webhook-valid")!;
  const decrypt = {
    privateKeys: records.recipient_private_jwks as JsonWebKeySet,
    brokerKeys: records.broker_delivery_signing_jwks as JsonWebKeySet,
    recipient: records.recipient,
  };
  const clock = () => NOW * 1000;

  it("parses a plain CloudEvent", async () => {
    const receiver = new WebhookReceiver({ keys: [SECRET], clock });
    const got = await receiver.receive(BODY, { ...headers("msg_3", NOW, v1(SECRET, "msg_3", NOW, BODY)), "content-type": "application/cloudevents+json" });
    assert.equal(got.deliveryId, "msg_3");
    assert.equal(got.encrypted, false);
    assert.equal(got.event.id, "m-1");
    assert.equal(got.opened, null);
  });

  it("decrypts an encrypted body bound to its webhook-id", async () => {
    const receiver = new WebhookReceiver({ keys: [SECRET], clock, decrypt });
    const id = sealed.context.delivery_id;
    const got = await receiver.receive(sealed.token, { ...headers(id, NOW, v1(SECRET, id, NOW, sealed.token)), "content-type": "application/jose" });
    assert.equal(got.encrypted, true);
    assert.deepEqual(got.event, sealed.event);
    assert.equal(got.opened?.binding.deliveryId, id);
    // without a content-type, the compact JWE is recognised by its shape
    const bare = await receiver.receive(sealed.token, headers(id, NOW, v1(SECRET, id, NOW, sealed.token)));
    assert.equal(bare.encrypted, true);
  });

  it("refuses an encrypted body under another webhook-id, and one it has no keys for", async () => {
    const receiver = new WebhookReceiver({ keys: [SECRET], clock, decrypt });
    const h = { ...headers("msg_other", NOW, v1(SECRET, "msg_other", NOW, sealed.token)), "content-type": "application/jose" };
    await assert.rejects(receiver.receive(sealed.token, h), MisroutedError);
    await assert.rejects(new WebhookReceiver({ keys: [SECRET], clock }).receive(sealed.token, h), ConfigurationError);
  });

  it("verifies before it decrypts", async () => {
    const receiver = new WebhookReceiver({ keys: [OTHER], clock, decrypt });
    const id = sealed.context.delivery_id;
    await assert.rejects(
      receiver.receive(sealed.token, { ...headers(id, NOW, v1(SECRET, id, NOW, sealed.token)), "content-type": "application/jose" }),
      { kind: "signature" },
    );
  });
});
