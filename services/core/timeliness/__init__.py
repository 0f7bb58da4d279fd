"""Timeliness (issue 6): the release-notice lifecycle, the notice period, acknowledgement
duties, DIP breach deadlines, subscription filters and the durable scheduler."""
