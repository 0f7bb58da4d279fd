package org.isabroker.client;

import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * Your inbox as an {@code Iterable}: each {@code hasNext()} that finds no entry waiting
 * long-polls the broker ({@code GET /v1/inbox?wait=...}) until one arrives, so a plain
 * {@code for} loop is a reading loop. Entries come oldest first, messages and notices alike.
 *
 * <pre>{@code
 * Inbox inbox = broker.inbox().waitSeconds(30).open();
 * for (InboxEntry entry : inbox) {
 *     if (entry.isMessage() && storeOnce(entry.deliveryId(), entry.event())) {
 *         entry.event().dutyIds().forEach(id -> openTask(id, entry.event()));
 *     }
 *     inbox.acknowledge(entry);   // moves this client's cursor past it
 * }
 * }</pre>
 *
 * Reading starts after this client's acknowledged cursor (or {@link Builder#after}) and goes on
 * from each page's {@code next_cursor}. Acknowledging moves the cursor the broker keeps for this
 * client, so a restarted reader starts after the last entry acknowledged: store each entry
 * idempotently (on {@code deliveryId()}, or the event id for a notice) before acknowledging it,
 * since entries read but not acknowledged are read again. Not thread-safe: one reader per
 * {@code Inbox}.
 */
public final class Inbox implements Iterable<InboxEntry> {
    private final IsaBrokerClient client;
    private final int limit;
    private final int waitSeconds;
    private final boolean stopWhenEmpty;
    private Long after;
    private Long lastReturned;

    private Inbox(Builder b) {
        this.client = b.client;
        this.limit = b.limit;
        this.waitSeconds = b.waitSeconds;
        this.stopWhenEmpty = b.stopWhenEmpty;
        this.after = b.after;
    }

    /**
     * The entries. Unless {@link Builder#stopWhenEmpty()}, the iterator never ends: it blocks in
     * long polls. Errors ({@link ProblemException}, {@link TransportException}) are thrown from
     * {@code hasNext()}; a new iterator then reads on from where this one stopped.
     */
    @Override
    public Iterator<InboxEntry> iterator() {
        return new Iterator<>() {
            private final ArrayDeque<InboxEntry> buffer = new ArrayDeque<>();
            private boolean finished;

            @Override
            public boolean hasNext() {
                while (buffer.isEmpty() && !finished) {
                    InboxPage page = client.readInbox(after, limit, waitSeconds);
                    after = page.nextCursor();
                    buffer.addAll(page.entries());
                    if (page.entries().isEmpty() && stopWhenEmpty) {
                        finished = true;
                    }
                }
                return !buffer.isEmpty();
            }

            @Override
            public InboxEntry next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                InboxEntry entry = buffer.poll();
                lastReturned = entry.cursor();
                return entry;
            }
        };
    }

    /** The entries as a sequential stream (endless unless {@link Builder#stopWhenEmpty()}). */
    public Stream<InboxEntry> stream() {
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(iterator(),
                Spliterator.ORDERED | Spliterator.NONNULL), false);
    }

    /** Acknowledges every entry up to and including {@code entry}. */
    public long acknowledge(InboxEntry entry) {
        return client.acknowledgeInbox(entry.cursor());
    }

    /** Acknowledges every entry returned so far; does nothing if none was. */
    public void acknowledge() {
        if (lastReturned != null) {
            client.acknowledgeInbox(lastReturned);
        }
    }

    /** The cursor reading goes on after (null until the first read, when none was given). */
    public Long position() {
        return after;
    }

    /** How to read. */
    public static final class Builder {
        private final IsaBrokerClient client;
        private int limit = 100;
        private int waitSeconds = 30;
        private boolean stopWhenEmpty;
        private Long after;

        Builder(IsaBrokerClient client) {
            this.client = client;
        }

        /** Entries per read, 1 to 500 (default 100). */
        public Builder limit(int limit) {
            if (limit < 1 || limit > 500) {
                throw new IllegalArgumentException("limit is 1 to 500");
            }
            this.limit = limit;
            return this;
        }

        /** Long-poll wait when there is no entry, in seconds (default 30; 0 = no wait). */
        public Builder waitSeconds(int seconds) {
            if (seconds < 0) {
                throw new IllegalArgumentException("wait must not be negative");
            }
            this.waitSeconds = seconds;
            return this;
        }

        /** Start after this cursor instead of this client's acknowledged cursor. */
        public Builder after(long cursor) {
            this.after = cursor;
            return this;
        }

        /** End the iteration at the first read that finds nothing (after its wait): drains the inbox. */
        public Builder stopWhenEmpty() {
            this.stopWhenEmpty = true;
            return this;
        }

        public Inbox open() {
            return new Inbox(this);
        }
    }
}
