/**
 * The shapes of what the broker sends, with the member names it uses (snake_case). Members
 * the broker may add later are allowed: every object type is open.
 */

/** The `fetch` this package calls (default the global one). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export type MessageType = "release-notice" | "licence-recall" | "dip-breach";
export type Channel = "webhook" | "inbox" | "kafka";
export type SignatureScheme = "v1" | "v1a";

/** A structured CloudEvent 1.0 as delivered (webhook body, inbox entry, agency-topic record). */
export interface CloudEvent {
  specversion: string;
  /** The message id (the same for every recipient). */
  id: string;
  /** `urn:isa-broker:party:<sender>`, `urn:isa-broker:scheduler` or `urn:isa-broker:router`. */
  source: string;
  /** `org.isa-broker.release-notice.v1`, ... */
  type: string;
  time?: string;
  /** The person's keyed pseudonym (or, for a broker event, a message id). */
  subject?: string;
  datacontenttype?: string;
  /** Your party id. */
  isarecipient?: string;
  /** The agreements permitting this delivery, `ID@version`, comma-separated. */
  isaagreements?: string;
  /** The delivery id (`webhook-id`). */
  isadeliveryid?: string;
  isalifecycle?: "original" | "amended" | "cancelled" | "released" | "outcome";
  isaversion?: number;
  isarefersto?: string;
  isacancelreason?: string;
  isanoticedays?: string;
  isashortnotice?: string;
  isadaysearly?: number;
  /** Acknowledgement duties on you, comma-separated, earliest due first ({@link dutyIds}). */
  isadutyid?: string;
  /** When the (earliest) duty is due, RFC 3339 UTC. */
  isadutydue?: string;
  traceparent?: string;
  /** Your projection: only the fields your agreements permit. */
  data?: Record<string, unknown>;
  [attribute: string]: unknown;
}

/** The acknowledgement duty ids an event puts on you (none when `isadutyid` is absent). */
export function dutyIds(event: Pick<CloudEvent, "isadutyid">): string[] {
  return (event.isadutyid ?? "")
    .split(",")
    .map((id) => id.trim())
    .filter(Boolean);
}

export interface Grant {
  agreement: string;
  version: string;
  flow: string;
  purpose: string;
  fields: string[];
}

export interface Withheld {
  agreement: string;
  version: string;
  rule: string;
  kind: "prohibited" | "hard_block" | string;
  fields: string[];
  reason: string;
}

/** The `202` answer to a publish or an update. */
export interface AcceptedMessage {
  id: string;
  status: "accepted";
  message_type: MessageType;
  lifecycle: string;
  refers_to: string | null;
  version: number;
  recipients: {
    party: string;
    fields: string[];
    agreements: { id: string; version: string }[];
    purposes: string[];
    grants: Grant[];
    withheld: Withheld[];
    [member: string]: unknown;
  }[];
  agreements: { id: string; version: string }[];
  not_applied: {
    agreement: string;
    version: string;
    flow: string;
    recipient: string | null;
    outcome: string;
    detail: string;
  }[];
  warnings: string[];
  timeliness: Record<string, unknown> | null;
  [member: string]: unknown;
}

export interface KafkaCredential {
  username: string;
  password: string;
  mechanism: string;
  topic: string;
  group_prefix: string;
}

export interface Subscription {
  id: string;
  message_types: MessageType[];
  channel: Channel;
  webhook: { url: string } | null;
  kafka_topic: string | null;
  status: "active" | "disabled";
  status_reason: string | null;
  created_at: string;
  signature_scheme: SignatureScheme | null;
  public_key: string | null;
  previous_secret_until: string | null;
  filters: Record<string, unknown> | null;
  encrypt?: boolean;
  /** `v1` webhooks: the `whsec_` secret, in the answer to creation or rotation only. */
  secret?: string | null;
  /** The first `kafka` subscription of your party: its Kafka login, shown once. */
  kafka_credential?: KafkaCredential | null;
  [member: string]: unknown;
}

export type DeliveryStatus = "pending" | "retrying" | "delivered" | "dead_lettered" | "withheld" | "no_channel";

export interface Attempt {
  at: string;
  status_code: number | null;
  error: string | null;
  duration_ms: number | null;
}

export interface Delivery {
  id: string;
  message_id: string;
  message_type: string;
  subscription_id: string | null;
  channel: Channel | "none";
  status: DeliveryStatus;
  fields: string[];
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: string | null;
  created_at: string;
  updated_at: string;
  /** `getDelivery` and `listDeadLetters` only. */
  history?: Attempt[];
  [member: string]: unknown;
}

export interface Duty {
  id: string;
  message_id: string;
  recipient: string;
  agreement: string;
  flow: string;
  due_at: string;
  status: string;
  acknowledged_at?: string | null;
  acknowledged_by?: string | null;
  action?: string | null;
  late?: boolean | null;
  allowed_actions?: string[];
  [member: string]: unknown;
}

export interface InboxEntry {
  /** Increasing, not consecutive. */
  cursor: number;
  kind: "message" | "notice";
  /** The delivery id of a `message`; `null` for a notice. De-duplicate on it. */
  delivery_id: string | null;
  event: CloudEvent;
}

export interface InboxPage {
  entries: InboxEntry[];
  next_cursor: number;
  acknowledged: number;
}

export interface EncryptionKey {
  kid: string;
  thumbprint: string;
  jwk: Record<string, unknown>;
  created_at: string;
  created_by: string;
  retired_at: string | null;
  current: boolean;
}

/** The token endpoint's answer. */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
}
