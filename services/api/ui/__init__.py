"""The web UI: server-rendered Jinja2 pages over the same functions as the JSON API."""
