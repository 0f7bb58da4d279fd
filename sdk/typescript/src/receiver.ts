/** Receiving a webhook request end to end: verify, then parse or decrypt the body. */

import { ConfigurationError, DeliveryDecryptError } from "./errors.js";
import { CONTENT_TYPE, openDelivery, type OpenOptions, type Opened } from "./sealed.js";
import type { CloudEvent } from "./types.js";
import { headerValue, WebhookVerifier, type HeadersLike, type WebhookVerifierOptions } from "./webhooks.js";

export interface WebhookReceiverOptions extends WebhookVerifierOptions {
  /** The subscription's `whsec_` secret or `whpk_` public key; during a rotation, both. */
  keys: string | readonly string[];
  /** Needed for a subscription made with `encrypt: true`: your private keys, the broker's
   * delivery-signing keys, and your party id. */
  decrypt?: OpenOptions;
}

export interface ReceivedWebhook {
  /** The delivery id (`webhook-id`): de-duplicate on it. */
  deliveryId: string;
  /** `webhook-timestamp`, Unix seconds. */
  timestamp: number;
  /** The CloudEvent (decrypted when it came encrypted). */
  event: CloudEvent;
  /** Whether the body was a sealed delivery. */
  encrypted: boolean;
  /** For an encrypted body: the binding, key ids and the broker's signed JWS (to keep as
   * proof of what the broker sent). */
  opened: Opened | null;
}

function looksSealed(body: Uint8Array, contentType: string | undefined): boolean {
  if (contentType !== undefined) return contentType.split(";")[0]!.trim().toLowerCase() === CONTENT_TYPE;
  const first = body[0];
  return first !== undefined && first !== 0x7b /* { */ && new TextDecoder().decode(body).split(".").length === 5;
}

/**
 * A webhook endpoint's checks in one call: the signature and timestamp
 * ({@link WebhookVerifier}), then the body parsed, or opened with {@link openDelivery} when it
 * is a sealed delivery (`content-type: application/jose`), bound to the `webhook-id`.
 *
 * Throws {@link WebhookVerificationError} (answer `401`) or {@link DeliveryDecryptError}
 * (verified, so it came from the broker's network path, but do not act on it).
 */
export class WebhookReceiver {
  readonly verifier: WebhookVerifier;
  private readonly decrypt: OpenOptions | undefined;

  constructor(options: WebhookReceiverOptions) {
    this.verifier = new WebhookVerifier(options.keys, options);
    this.decrypt = options.decrypt;
  }

  async receive(body: string | Uint8Array, headers: HeadersLike): Promise<ReceivedWebhook> {
    const verified = this.verifier.verify(body, headers);
    if (looksSealed(verified.body, headerValue(headers, "content-type"))) {
      if (!this.decrypt) {
        throw new ConfigurationError("an encrypted webhook arrived: give the receiver decrypt options");
      }
      const opened = await openDelivery(verified.body, this.decrypt, { deliveryId: verified.id });
      return { deliveryId: verified.id, timestamp: verified.timestamp, event: opened.event, encrypted: true, opened };
    }
    let event: unknown;
    try {
      event = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(verified.body));
    } catch (e) {
      throw new DeliveryDecryptError(`the webhook body is not JSON: ${String(e)}`, { cause: e });
    }
    if (!event || typeof event !== "object" || Array.isArray(event)) {
      throw new DeliveryDecryptError("the webhook body is not a CloudEvent object");
    }
    return { deliveryId: verified.id, timestamp: verified.timestamp, event: event as CloudEvent, encrypted: false, opened: null };
  }
}
