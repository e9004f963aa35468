"""Delivering one notification: a signed Standard Webhooks POST, or a message through Apprise.
Knows targets and messages only: nothing of journals, folders or HeyGen."""
