package org.isabroker.client;

import java.util.List;

/**
 * One read of the inbox.
 *
 * @param nextCursor pass as {@code after} to read on, or acknowledge it when every entry is processed
 * @param acknowledged this client's acknowledged cursor
 */
public record InboxPage(List<InboxEntry> entries, long nextCursor, long acknowledged) {}
