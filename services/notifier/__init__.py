"""The notifier: every mail in and out (issue 19).

Out: ``notification.requested.v1`` (tier 0/1/3 notices) and ``conversation.message.sent.v1`` (turns of an
email conversation) rendered from Jinja2 templates and sent over one reused SMTP connection (aiosmtplib),
retried with backoff; a permanent failure or a bounce ends in a tier 3 case.
In: the support address's door, an SMTP receiver (aiosmtpd) and an HTTP webhook taking a raw RFC 822
message; each mail becomes a ``contact.received.v1`` (channel email) in its thread's conversation.
"""
