/** The broker's delivery-signing keys (refresh on an unknown kid, pinning) and your own keys. */

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { exportJWK, generateKeyPair } from "jose";

import {
  BrokerKeys,
  BrokerKeysUnavailableError,
  ConfigurationError,
  DeliveryDecryptError,
  NotSignedByBrokerError,
  RecipientKeys,
  generateEncryptionKey,
  openDelivery,
  openRecord,
  protectedHeader,
  thumbprint,
  type JsonWebKeySet,
} from "@isa-broker/client";

import { fakeBroker, vectors, type RecordVectors } from "./helpers.js";

const records = vectors<RecordVectors>("records.json");
const BROKER_JWKS = records.broker_delivery_signing_jwks as JsonWebKeySet;
const valid = records.cases.find((c) => c.name === "record-valid")!;
const unknownSigner = records.cases.find((c) => c.name === "unknown-signing-key")!;
const URL_ = "https://isa-broker.example/.well-known/delivery-signing-keys.json";

async function otherSet(kid = "retired-2025"): Promise<JsonWebKeySet> {
  const { publicKey } = await generateKeyPair("ES256", { extractable: true });
  return { keys: [{ ...(await exportJWK(publicKey)), kid, use: "sig", alg: "ES256" }] };
}

function context(c: typeof valid) {
  return { messageId: c.context.message_id, deliveryId: c.context.delivery_id };
}

function fetchStub(answers: (() => Response)[]): { fetch: (url: string) => Promise<Response>; urls: string[] } {
  const urls: string[] = [];
  return {
    urls,
    fetch: async (url: string) => {
      urls.push(url);
      const next = answers.shift();
      if (!next) throw new Error("no more answers");
      return next();
    },
  };
}

const json = (body: unknown) => () => new Response(JSON.stringify(body), { status: 200, headers: { "content-type": "application/json" } });

describe("BrokerKeys", () => {
  it("fetches the set again when a delivery names a key it does not hold, at most once per refreshSeconds", async () => {
    let now = 0;
    const stub = fetchStub([json(BROKER_JWKS), json(BROKER_JWKS)]);
    const brokerKeys = new BrokerKeys(await otherSet(), { url: URL_, fetch: stub.fetch, clock: () => now });
    const options = { privateKeys: records.recipient_private_jwks as JsonWebKeySet, brokerKeys, recipient: records.recipient };

    const opened = await openDelivery(valid.token, options, context(valid));
    assert.deepEqual(opened.event, valid.event);
    assert.deepEqual(stub.urls, [URL_]);
    assert.deepEqual(brokerKeys.jwks().keys.map((k) => k.kid), BROKER_JWKS.keys.map((k) => k["kid"]), "the set fetched replaces the one held");

    // a key the broker does not publish: not looked for again until refreshSeconds have passed
    await assert.rejects(openDelivery(unknownSigner.token, options, context(unknownSigner)), NotSignedByBrokerError);
    assert.equal(stub.urls.length, 1);
    now += 300_001;
    await assert.rejects(openDelivery(unknownSigner.token, options, context(unknownSigner)), NotSignedByBrokerError);
    assert.equal(stub.urls.length, 2);
  });

  it("says so when the set cannot be fetched again", async () => {
    for (const answer of [
      () => new Response("down", { status: 503 }),
      () => new Response("not json", { status: 200 }),
      json({ keys: [] }),
    ]) {
      const brokerKeys = new BrokerKeys(await otherSet(), { url: URL_, fetch: fetchStub([answer]).fetch });
      await assert.rejects(
        openDelivery(valid.token, { privateKeys: records.recipient_private_jwks as JsonWebKeySet, brokerKeys, recipient: records.recipient }, context(valid)),
        (e: unknown) => e instanceof BrokerKeysUnavailableError && e.kind === "broker_keys_unavailable",
      );
    }
  });

  it("never changes without a URL", async () => {
    const brokerKeys = new BrokerKeys(await otherSet());
    assert.equal(brokerKeys.url, null);
    await assert.rejects(
      openDelivery(valid.token, { privateKeys: records.recipient_private_jwks as JsonWebKeySet, brokerKeys, recipient: records.recipient }, context(valid)),
      NotSignedByBrokerError,
    );
    await assert.rejects(brokerKeys.refresh(), ConfigurationError);
  });

  it("fetches from the broker's URL: https, or http when allowed", async () => {
    assert.throws(() => new BrokerKeys(BROKER_JWKS, { url: "http://isa-broker.example/keys" }), ConfigurationError);
    await assert.rejects(BrokerKeys.fromUrl("http://127.0.0.1:1/keys"), ConfigurationError);
    const broker = await fakeBroker(() => ({ status: 200, body: BROKER_JWKS }));
    try {
      const keys = await BrokerKeys.fromUrl(`${broker.url}/.well-known/delivery-signing-keys.json`, { allowHttp: true });
      assert.deepEqual(Object.keys(await keys.thumbprints()), BROKER_JWKS.keys.map((k) => k["kid"]));
    } finally {
      await broker.close();
    }
  });

  it("refuses sets that are not the broker's public P-256 signing keys", async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: "leaked" };
    for (const set of [{}, { keys: [] }, { keys: [privateJwk] }, { keys: [{ kty: "EC", crv: "P-384", x: "a", y: "b", kid: "k" }] }, { keys: [{ ...BROKER_JWKS.keys[0], kid: "bad kid!" }] }]) {
      assert.throws(() => new BrokerKeys(set as JsonWebKeySet), ConfigurationError, JSON.stringify(set));
    }
  });

  it("loads a pinned file, checking the thumbprints given", async () => {
    const dir = mkdtempSync(join(tmpdir(), "isa-sdk-"));
    const path = join(dir, "broker-delivery-signing.jwks.json");
    writeFileSync(path, JSON.stringify(BROKER_JWKS));
    const expected = await Promise.all(BROKER_JWKS.keys.map((k) => thumbprint(k)));
    const keys = await BrokerKeys.fromFile(path, { thumbprints: expected });
    assert.deepEqual(Object.values(await keys.thumbprints()), expected);
    await assert.rejects(BrokerKeys.fromFile(path, { thumbprints: ["not-this-one"] }), ConfigurationError);
  });
});

describe("your own keys", () => {
  it("generates a key pair to register, named by its thumbprint unless given a kid", async () => {
    const { privateJwk, publicJwk } = await generateEncryptionKey();
    assert.equal(publicJwk.kid, await thumbprint(publicJwk));
    assert.equal(privateJwk.kid, publicJwk.kid);
    assert.equal("d" in publicJwk, false);
    assert.equal(typeof privateJwk.d, "string");
    assert.deepEqual([publicJwk.kty, publicJwk.crv, publicJwk.use, publicJwk.alg], ["EC", "P-256", "enc", "ECDH-ES+A256KW"]);
    const named = await generateEncryptionKey({ kid: "vawg-2026-12", crv: "P-384" });
    assert.deepEqual([named.publicJwk.kid, named.publicJwk.crv], ["vawg-2026-12", "P-384"]);
    await assert.rejects(generateEncryptionKey({ kid: "no spaces" }), ConfigurationError);
  });

  it("holds private EC keys with a kid only", async () => {
    const { privateJwk, publicJwk } = await generateEncryptionKey();
    assert.throws(() => new RecipientKeys([publicJwk]), ConfigurationError);
    assert.throws(() => new RecipientKeys([{ ...privateJwk, kid: "" }]), ConfigurationError);
    assert.throws(() => new RecipientKeys({ keys: [] }), ConfigurationError);
    assert.deepEqual(new RecipientKeys([privateJwk]).kids, [privateJwk.kid]);
  });

  it("opens a record given its headers as pairs, and refuses a record without a value", async () => {
    const options = { privateKeys: records.recipient_private_jwks as JsonWebKeySet, brokerKeys: BROKER_JWKS, recipient: records.recipient };
    const opened = await openRecord(valid.token, [["isa_message_id", valid.context.message_id], ["isa_delivery_id", Buffer.from(valid.context.delivery_id)]], options);
    assert.deepEqual(opened.event, valid.event);
    await assert.rejects(openRecord(null, {}, options), (e: unknown) => e instanceof DeliveryDecryptError && e.kind === "malformed");
    assert.equal(protectedHeader(valid.token)["isa_recipient"], records.recipient);
  });
});
