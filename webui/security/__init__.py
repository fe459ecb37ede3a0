"""Security middlewares, one concern per module: Host allowlist, access token and
session cookie, CSRF with Origin / Sec-Fetch-Site checks, body size limits, and
response headers (CSP and friends)."""
