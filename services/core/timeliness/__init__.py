"""Timeliness: the release-notice lifecycle, the notice period, acknowledgement duties,
escalations, DIP breach deadlines, subscription filters, the priority lane and the durable
scheduler."""
