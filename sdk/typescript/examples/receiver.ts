/**
 * A reference receiver: the smallest correct service that takes a council's release alerts
 * from isa-broker by webhook.
 *
 * For each request it: reads the raw body; verifies the signature and the timestamp (401
 * otherwise); skips a delivery it has already stored (de-duplication on `webhook-id`: the
 * broker delivers at least once); decrypts the body when the subscription is encrypted,
 * checking that the broker signed it for this very delivery; stores it and answers 204 at
 * once; then hands the alert to the people who act on it and acknowledges the
 * acknowledgement duty the delivery carries.
 *
 * Run it (after `npm run build`):
 *
 *   ISA_BROKER_URL=https://isa-broker.example \
 *   ISA_PARTY=eastborough-vawg \
 *   ISA_CLIENT_ID=eastborough-vawg.8b7e6d5c4a3f ISA_CLIENT_SECRET=cs_... \
 *   ISA_WEBHOOK_KEYS="whsec_..." \
 *   ISA_PRIVATE_KEYS=keys/vawg-private.jwks.json \
 *   ISA_BROKER_KEYS=keys/broker-delivery-signing.jwks.json \
 *   PORT=8080 node dist/examples/receiver.js
 *
 * `ISA_WEBHOOK_KEYS` holds every key of the subscription you hold, space-separated (during a
 * rotation, the new one and the previous one). `ISA_PRIVATE_KEYS` and `ISA_BROKER_KEYS` are
 * needed only for a subscription made with `"encrypt": true`.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { pathToFileURL } from "node:url";

import {
  BrokerKeys,
  DeliveryDecryptError,
  IsaBrokerClient,
  RecipientKeys,
  WebhookReceiver,
  WebhookVerificationError,
  dutyIds,
  type CloudEvent,
} from "@isa-broker/client";

/** Where delivery ids are remembered. Use a table with a unique key in your own database:
 * this in-memory one forgets on restart (then a retried delivery would be taken again). */
export interface DeliveryStore {
  /** Store the event under its delivery id; `false` when that id was stored before. */
  storeOnce(deliveryId: string, event: CloudEvent): Promise<boolean>;
}

export class MemoryStore implements DeliveryStore {
  private readonly seen = new Map<string, CloudEvent>();

  constructor(private readonly capacity = 100_000) {}

  async storeOnce(deliveryId: string, event: CloudEvent): Promise<boolean> {
    if (this.seen.has(deliveryId)) return false;
    if (this.seen.size >= this.capacity) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(deliveryId, event);
    return true;
  }
}

export interface ReleaseAlertService {
  receiver: WebhookReceiver;
  /** Used to acknowledge duties (a client of your party with the scope `duties:ack`). */
  broker: IsaBrokerClient;
  store?: DeliveryStore;
  /** Hand the alert to whoever acts on it (a case worker's task list ...). Acknowledging the
   * duty follows when it resolves. */
  act?: (event: CloudEvent) => Promise<void>;
  log?: (message: string) => void;
}

const MAX_BODY_BYTES = 1_000_000;

async function rawBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The request handler (for `http.createServer`, or adapt it to your framework: what matters
 * is the raw body and the headers). */
export function releaseAlertHandler(service: ReleaseAlertService): (req: IncomingMessage, res: ServerResponse) => void {
  const store = service.store ?? new MemoryStore();
  const log = service.log ?? ((m: string) => console.log(m));
  const act = service.act ?? (async (e: CloudEvent) => log(`release alert ${e.id} (${e.type}) for ${e.subject ?? "?"}`));

  async function followUp(event: CloudEvent): Promise<void> {
    await act(event);
    for (const dutyId of dutyIds(event)) {
      const duty = await service.broker.acknowledgeDuty(dutyId); // safe to repeat
      log(`duty ${dutyId} ${duty.status}${duty.late ? " (late)" : ""}`);
    }
  }

  return (req, res) => {
    void (async () => {
      if (req.method !== "POST") return answer(res, 405);
      const body = await rawBody(req);
      if (body === null) return answer(res, 413);
      let received;
      try {
        received = await service.receiver.receive(body, req.headers);
      } catch (e) {
        if (e instanceof WebhookVerificationError) {
          log(`refused a request: ${e.kind}`);
          return answer(res, 401);
        }
        if (e instanceof DeliveryDecryptError) {
          // signed by the broker's webhook key but does not open for us (a key we do not hold
          // yet, or not signed for this delivery): not processed. The broker retries, then
          // dead-letters it; replay it once fixed. Never log the content.
          log(`delivery ${req.headers["webhook-id"]} not opened: ${e.kind}: ${e.message}`);
          return answer(res, 500);
        }
        throw e;
      }
      if (!(await store.storeOnce(received.deliveryId, received.event))) {
        return answer(res, 204); // a duplicate: already stored, do nothing again
      }
      answer(res, 204); // answer quickly; act afterwards
      followUp(received.event).catch((e: unknown) => log(`follow-up of ${received.deliveryId} failed: ${String(e)}`));
    })().catch((e: unknown) => {
      log(`receiver error: ${String(e)}`);
      if (!res.headersSent) answer(res, 500);
    });
  };
}

function answer(res: ServerResponse, status: number): void {
  res.writeHead(status).end();
}

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
}

export async function main(): Promise<Server> {
  const baseUrl = env("ISA_BROKER_URL");
  const broker = new IsaBrokerClient({
    baseUrl,
    credentials: { clientId: env("ISA_CLIENT_ID"), clientSecret: env("ISA_CLIENT_SECRET") },
  });
  const privateKeys = process.env["ISA_PRIVATE_KEYS"];
  const brokerKeys = process.env["ISA_BROKER_KEYS"];
  const receiver = new WebhookReceiver({
    keys: env("ISA_WEBHOOK_KEYS").split(" ").filter(Boolean),
    ...(privateKeys &&
      brokerKeys && {
        decrypt: {
          privateKeys: await RecipientKeys.fromFile(privateKeys),
          // pinned, and followed through rotations from the broker's published set
          brokerKeys: await BrokerKeys.fromFile(brokerKeys, {
            url: `${baseUrl}/.well-known/delivery-signing-keys.json`,
            allowHttp: baseUrl.startsWith("http://"), // a local development broker only
          }),
          recipient: env("ISA_PARTY"),
        },
      }),
  });
  const server = createServer(releaseAlertHandler({ receiver, broker }));
  const port = Number(process.env["PORT"] ?? 8080);
  server.listen(port, () => console.log(`receiving release alerts on port ${port}`));
  return server;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
