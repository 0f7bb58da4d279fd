/** The inbox (`GET /v1/inbox`, `POST /v1/inbox/ack`) as an async iterator. */

import type { IsaBrokerClient } from "./client.js";
import type { InboxEntry } from "./types.js";

export interface InboxOptions {
  /** Seconds each read waits for an entry while the inbox is empty (long poll; default 30, or
   * 0 with `untilEmpty`). The broker cuts it to its own maximum (30 s by default). */
  wait?: number;
  /** Entries per read, 1 to 500 (default 100). */
  limit?: number;
  /** Start after this cursor (default: this client's acknowledged cursor). */
  after?: number;
  /**
   * `"auto"` (default): a page is acknowledged once your loop asks for the entry after its last
   * one, that is once the loop body has finished with every entry of it without throwing. If
   * the loop stops (`break`, an exception, a crash) in the middle of a page, that page is read
   * again next time: store each entry idempotently (de-duplicate on `delivery_id`).
   *
   * `"manual"`: nothing is acknowledged unless you call {@link InboxStream.ack}.
   */
  ack?: "auto" | "manual";
  /** End the iteration at the first read that returns no entry: drain what is there. */
  untilEmpty?: boolean;
  /** Abort the current read and end the iteration (no error is thrown). */
  signal?: AbortSignal;
}

/** Your party's inbox, oldest entry first. Iterate it with `for await`. */
export class InboxStream implements AsyncIterable<InboxEntry> {
  /** The cursor of the last entry handed out. */
  position: number | null = null;
  /** The highest cursor acknowledged by this stream, or reported by the broker. */
  acknowledged: number | null = null;
  private readonly client: IsaBrokerClient;
  private readonly options: InboxOptions;

  constructor(client: IsaBrokerClient, options: InboxOptions) {
    this.client = client;
    this.options = options;
  }

  /** Acknowledge every entry up to and including `entry` (or a cursor). */
  async ack(entry: InboxEntry | number): Promise<void> {
    const cursor = typeof entry === "number" ? entry : entry.cursor;
    if (this.acknowledged !== null && cursor <= this.acknowledged) return;
    const answer = await this.client.ackInbox(cursor);
    this.acknowledged = answer.acknowledged;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<InboxEntry> {
    const { signal, untilEmpty = false } = this.options;
    const wait = this.options.wait ?? (untilEmpty ? 0 : 30);
    const auto = (this.options.ack ?? "auto") === "auto";
    let after = this.options.after;
    while (!signal?.aborted) {
      let page;
      try {
        page = await this.client.readInbox({
          ...(after !== undefined && { after }),
          ...(this.options.limit !== undefined && { limit: this.options.limit }),
          wait,
          ...(signal !== undefined && { signal }),
        });
      } catch (e) {
        if (signal?.aborted) return;
        throw e;
      }
      if (this.acknowledged === null || page.acknowledged > this.acknowledged) {
        this.acknowledged = page.acknowledged;
      }
      after = page.next_cursor;
      if (page.entries.length === 0) {
        if (untilEmpty) return;
        continue;
      }
      for (const entry of page.entries) {
        this.position = entry.cursor;
        yield entry;
      }
      if (auto) await this.ack(page.next_cursor);
    }
  }
}
