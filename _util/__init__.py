"""Shared pieces of the cost-tracking bot: settings, storage, clients, messages."""
