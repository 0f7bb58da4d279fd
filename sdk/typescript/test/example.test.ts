/** The reference receiver (`examples/receiver.ts`) with signed requests and a stand-in broker
 * (the end-to-end test runs it against the real one). */

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import { Webhook } from "standardwebhooks";

import { IsaBrokerClient, WebhookReceiver, type CloudEvent, type JsonWebKeySet } from "@isa-broker/client";

import { MemoryStore, releaseAlertHandler } from "../examples/receiver.js";
import { TOKEN_ANSWER, fakeBroker, vectors, type RecordVectors } from "./helpers.js";

const SECRET = "whsec_" + Buffer.from("the reference receiver's synthetic secret").toString("base64");
const records = vectors<RecordVectors>("records.json");
const sealed = records.cases.find((c) => c.name === "webhook-valid")!;

function signed(id: string, body: string, contentType: string, secret = SECRET): RequestInit {
  const now = new Date();
  return {
    method: "POST",
    body,
    headers: {
      "content-type": contentType,
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": new Webhook(secret).sign(id, now, body),
    },
  };
}

describe("the reference receiver", () => {
  let broker: Awaited<ReturnType<typeof fakeBroker>>;
  let server: Server;
  let url = "";
  const acted: CloudEvent[] = [];

  before(async () => {
    broker = await fakeBroker((r) => {
      if (r.path === "/oauth/token") return { status: 200, body: TOKEN_ANSWER };
      const duty = /^\/v1\/duties\/([^/]+)\/acknowledge$/.exec(r.path);
      if (duty) return { status: 200, body: { id: duty[1], status: "acknowledged", late: false } };
      return { status: 404, body: {} };
    });
    const handler = releaseAlertHandler({
      receiver: new WebhookReceiver({
        keys: [SECRET],
        decrypt: {
          privateKeys: records.recipient_private_jwks as JsonWebKeySet,
          brokerKeys: records.broker_delivery_signing_jwks as JsonWebKeySet,
          recipient: records.recipient,
        },
      }),
      broker: new IsaBrokerClient({ baseUrl: broker.url, credentials: { clientId: "eastborough-vawg.x", clientSecret: "s" } }),
      store: new MemoryStore(10),
      act: async (event) => {
        acted.push(event);
      },
      log: () => undefined,
    });
    server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/isa-webhook`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await broker.close();
  });

  it("verifies, stores once, answers 204 and acknowledges every duty the event carries", async () => {
    const event = {
      specversion: "1.0",
      id: "m-7",
      source: "urn:isa-broker:party:hmp-northgate",
      type: "org.isa-broker.release-notice.v1",
      isadeliveryid: "msg_7",
      isadutyid: "dut_a,dut_b",
      isadutydue: "2026-12-03T09:00:00Z",
      data: {},
    };
    const body = JSON.stringify(event);
    assert.equal((await fetch(url, signed("msg_7", body, "application/cloudevents+json"))).status, 204);
    assert.equal((await fetch(url, signed("msg_7", body, "application/cloudevents+json"))).status, 204, "a duplicate");
    const deadline = Date.now() + 5000;
    while (broker.requests.filter((r) => r.path.includes("/acknowledge")).length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(
      broker.requests.filter((r) => r.path.includes("/acknowledge")).map((r) => r.path),
      ["/v1/duties/dut_a/acknowledge", "/v1/duties/dut_b/acknowledge"],
    );
    assert.equal(acted.filter((e) => e.id === "m-7").length, 1, "acted on once");
  });

  it("decrypts an encrypted delivery", async () => {
    const id = sealed.context.delivery_id;
    assert.equal((await fetch(url, signed(id, sealed.token, "application/jose"))).status, 204);
    const deadline = Date.now() + 5000;
    while (!acted.some((e) => e.isadeliveryid === id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(acted.find((e) => e.isadeliveryid === id), sealed.event);
  });

  it("answers 401 to a request it cannot verify, 500 to one that does not open, 405 to a GET", async () => {
    const other = "whsec_" + Buffer.from("not the subscription's secret").toString("base64");
    assert.equal((await fetch(url, signed("msg_8", "{}", "application/cloudevents+json", other))).status, 401);
    assert.equal((await fetch(url, signed("msg_other", sealed.token, "application/jose"))).status, 500);
    assert.equal((await fetch(url)).status, 405);
  });
});
