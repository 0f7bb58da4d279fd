/** Every case of the shared test vectors (`sdk/test-vectors`): webhooks.json, records.json,
 * problems.json. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  DeliveryDecryptError,
  IsaBrokerClient,
  ProblemError,
  WebhookVerificationError,
  WebhookVerifier,
  openDelivery,
  openRecord,
  problemError,
  type JsonWebKeySet,
} from "@isa-broker/client";

import { TOKEN_ANSWER, fakeBroker, vectors, type ProblemCase, type RecordVectors, type WebhookCase } from "./helpers.js";

const webhooks = vectors<{ version: 1; cases: WebhookCase[] }>("webhooks.json");
const records = vectors<RecordVectors>("records.json");
const problems = vectors<{ version: 1; cases: ProblemCase[] }>("problems.json");

describe("webhooks.json", () => {
  it("has cases", () => assert.ok(webhooks.cases.length > 0));

  for (const c of webhooks.cases) {
    it(`${c.name}: ${c.valid ? "valid" : c.error}`, () => {
      const verifier = new WebhookVerifier(c.keys, { toleranceSeconds: c.tolerance, clock: () => c.now * 1000 });
      // the same answer whether the headers come as a plain object, a fetch Headers or in
      // upper case (Node lower-cases them; other frameworks may not)
      const shapes = [
        c.headers,
        new Headers(c.headers),
        Object.fromEntries(Object.entries(c.headers).map(([k, v]) => [k.toUpperCase(), v])),
      ];
      for (const headers of shapes) {
        for (const body of [c.body, new TextEncoder().encode(c.body)]) {
          if (c.valid) {
            const verified = verifier.verify(body, headers);
            assert.equal(verified.id, c.headers["webhook-id"]);
            assert.equal(verified.timestamp, Number(c.headers["webhook-timestamp"]));
          } else {
            assert.throws(
              () => verifier.verify(body, headers),
              (e: unknown) => e instanceof WebhookVerificationError && e.kind === c.error,
            );
          }
        }
      }
    });
  }
});

describe("records.json", () => {
  it("has cases", () => assert.ok(records.cases.length > 0));

  const options = {
    privateKeys: records.recipient_private_jwks as JsonWebKeySet,
    brokerKeys: records.broker_delivery_signing_jwks as JsonWebKeySet,
    recipient: records.recipient,
  };

  for (const c of records.cases) {
    it(`${c.name} (${c.kind}): ${c.valid ? "valid" : c.error}`, async () => {
      const open = () =>
        c.kind === "record"
          ? openRecord(Buffer.from(c.token), { isa_message_id: Buffer.from(c.context.message_id), isa_delivery_id: Buffer.from(c.context.delivery_id), "content-type": "application/jose" }, options)
          : openDelivery(c.token, options, { deliveryId: c.context.delivery_id, messageId: c.context.message_id });
      if (c.valid) {
        const opened = await open();
        assert.deepEqual(opened.event, c.event);
        assert.equal(opened.binding.recipient, records.recipient);
        assert.equal(opened.binding.deliveryId, c.context.delivery_id);
        assert.equal(opened.binding.messageId, c.context.message_id);
        assert.ok(records.broker_delivery_signing_jwks.keys.some((k) => k["kid"] === opened.signedBy));
        assert.equal(opened.signed.split(".").length, 3);
      } else {
        assert.equal(c.event, null);
        await assert.rejects(open, (e: unknown) => {
          assert.ok(e instanceof DeliveryDecryptError, `not a DeliveryDecryptError: ${String(e)}`);
          assert.equal(e.kind, c.error, `${e.name}: ${e.message}`);
          return true;
        });
      }
    });
  }
});

describe("problems.json", () => {
  it("has cases", () => assert.ok(problems.cases.length > 0));

  function check(error: unknown, c: ProblemCase): void {
    assert.ok(error instanceof ProblemError, `not a ProblemError: ${String(error)}`);
    assert.equal(error.code, c.expect.code);
    assert.equal(error.status, c.expect.status);
    assert.equal(error.title, c.expect.title);
    assert.equal(error.detail, c.expect.detail);
    assert.equal(error.retryAfter, c.expect.retry_after);
    assert.deepEqual([...error.fields], c.expect.fields);
    assert.equal(error.clause, c.expect.clause);
    assert.deepEqual(error.problem, c.body);
  }

  for (const c of problems.cases) {
    it(`${c.name}: ${c.status} ${c.expect.code}`, async () => {
      check(problemError(c.status, c.body, c.headers["retry-after"] ?? null), c);

      // and the same through a real answer to the client (a 401 is answered twice: the client
      // fetches a new token once and repeats the request; a 429 is not retried here)
      const broker = await fakeBroker((r) =>
        r.path === "/oauth/token" ? { status: 200, body: TOKEN_ANSWER } : { status: c.status, headers: c.headers, body: c.body },
      );
      try {
        const client = new IsaBrokerClient({
          baseUrl: broker.url,
          credentials: { clientId: "eastborough-vawg.test", clientSecret: "not-a-secret" },
          maxRetries: 0,
        });
        await assert.rejects(client.request("GET", "/v1/messages/x"), (e: unknown) => {
          check(e, c);
          return true;
        });
      } finally {
        await broker.close();
      }
    });
  }
});
