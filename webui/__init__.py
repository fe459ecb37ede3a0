"""ParanoIM's local web UI: identities, vanity addresses, invitations, contacts, node.

The daemon builds it with ``create_app(service, access_token=..., allowed_hosts=...)``
and serves it on 127.0.0.1 only.
"""

from webui.app import create_app

__all__ = ["create_app"]
