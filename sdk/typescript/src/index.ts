/**
 * `@isa-broker/client`: an agency's client of isa-broker.
 *
 * - {@link IsaBrokerClient}: tokens, publishing, subscriptions, encryption keys, deliveries,
 *   dead letters, duties and the inbox;
 * - {@link WebhookVerifier} and {@link WebhookReceiver}: webhook requests (Standard Webhooks
 *   `v1` and `v1a`, several keys during a rotation);
 * - {@link openDelivery}, {@link openRecord}, {@link BrokerKeys}: encrypted webhook bodies and
 *   agency-topic records, signed by the broker;
 * - the errors, all {@link IsaBrokerError}s.
 */

export { IsaBrokerClient } from "./client.js";
export type {
  ApiResponse,
  CreateSubscriptionRequest,
  DeadLetterFilters,
  DeliveryFilters,
  DutyFilters,
  DutyPage,
  IsaBrokerClientOptions,
  PublishOptions,
  PublishResult,
  RequestOptions,
} from "./client.js";
export { InboxStream } from "./inbox.js";
export type { InboxOptions } from "./inbox.js";
export { TokenSource, ASSERTION_TYPE } from "./tokens.js";
export type { ClientCredentials, ClientSecretCredentials, PrivateKeyCredentials, TokenSourceOptions } from "./tokens.js";
export {
  DEFAULT_TOLERANCE_SECONDS,
  PUBLIC_KEY_PREFIX,
  SECRET_PREFIX,
  WebhookVerifier,
  headerValue,
} from "./webhooks.js";
export type { HeadersLike, VerifiedWebhook, WebhookVerifierOptions } from "./webhooks.js";
export { WebhookReceiver } from "./receiver.js";
export type { ReceivedWebhook, WebhookReceiverOptions } from "./receiver.js";
export {
  ALG,
  BROKER_KEYS_PATH,
  BrokerKeys,
  CONTENT_TYPE,
  ENC,
  RecipientKeys,
  generateEncryptionKey,
  openDelivery,
  openRecord,
  protectedHeader,
  recordHeader,
  thumbprint,
  verifySigned,
} from "./sealed.js";
export type { Binding, BrokerKeysOptions, JsonWebKeySet, OpenContext, OpenOptions, Opened, RecordHeaders } from "./sealed.js";
export { dutyIds } from "./types.js";
export type {
  AcceptedMessage,
  Attempt,
  Channel,
  CloudEvent,
  Delivery,
  DeliveryStatus,
  Duty,
  EncryptionKey,
  FetchLike,
  InboxEntry,
  InboxPage,
  KafkaCredential,
  MessageType,
  SignatureScheme,
  Subscription,
  TokenResponse,
} from "./types.js";
export * from "./errors.js";
