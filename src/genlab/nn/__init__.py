"""Backbone networks. They know nothing of objectives, noise schedules or sampling."""
