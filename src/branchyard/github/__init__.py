"""Talking to GitHub: the REST client, commit/deployment feedback, branch protection as code."""
