"""ParanoIM: any Jabber client over a decentralized, end-to-end encrypted P2P network."""

__version__ = "0.1.0"  # the one version source; pyproject.toml reads it from here
