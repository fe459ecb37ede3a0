"""The config file: commented defaults that parse to the defaults, every key checked
with a message naming it, command-line overrides checked the same way, and the data
directory's precedence (--data-dir, PARANOIM_DATA_DIR, the file, the platform)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge import config
from bridge.config import Config, ConfigError
from bridge.paths import resolve_data_dir


def _uncommented(text: str) -> str:
    return "\n".join(line[2:] if re.match(r"# [a-z_]+ = ", line) else line
                     for line in text.splitlines())


def test_default_text_shows_every_key_with_its_default() -> None:
    assert config.parse(config.DEFAULT_TEXT) == Config()
    assert config.parse(_uncommented(config.DEFAULT_TEXT)) == Config()
    for key in config.known_keys():
        assert f"# {key.split('.')[-1]} = " in config.DEFAULT_TEXT, key


def test_first_load_writes_the_commented_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "config.toml"
    assert config.load(path) == Config()
    assert path.read_text() == config.DEFAULT_TEXT
    assert path.stat().st_mode & 0o077 == 0


def test_values_are_read() -> None:
    cfg = config.parse('data_dir = "/srv/pim"\n[xmpp]\nport = 5333\ndomain = "Chat.Lan"\n'
                       '[p2p]\npeers = ["192.0.2.7:45069", "peer.example:1"]\n'
                       'storage = "SQLite"\ndifficulty = 20\n[tor]\nenabled = true\n')
    assert (cfg.data_dir, cfg.xmpp_port, cfg.xmpp_domain, cfg.peers, cfg.storage,
            cfg.difficulty, cfg.tor) == ("/srv/pim", 5333, "chat.lan",
                                         ("192.0.2.7:45069", "peer.example:1"), "sqlite",
                                         20, True)


@pytest.mark.parametrize(("text", "key"), [
    ("nope = 1", "nope"),
    ("[xmpp]\nhost = '0.0.0.0'", "xmpp.host"),
    ("[web]\nport = 70000", "web.port"),
    ("[web]\nport = true", "web.port"),
    ("[web]\nopen_browser = 1", "web.open_browser"),
    ("[xmpp]\nchat_states = 'yes'", "xmpp.chat_states"),
    ("log_level = 'loud'", "log_level"),
    ("[xmpp]\ndomain = 'a b'", "xmpp.domain"),
    ("[p2p]\nannounce = 'x'", "p2p.announce"),
    ("[p2p]\npeers = 5", "p2p.peers"),
    ("[tor]\nsocks = '9050'", "tor.socks"),
    ("xmpp = 5", "xmpp"),
])
def test_bad_key_is_named(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        config.parse(text)


def test_overrides_are_checked_and_named() -> None:
    cfg = Config().override(xmpp_port=6000, peers=("h:1",), difficulty=None)
    assert cfg.xmpp_port == 6000 and cfg.peers == ("h:1",) and cfg.difficulty == Config().difficulty
    with pytest.raises(ConfigError, match="option --xmpp-port"):
        Config().override(xmpp_port=-1)
    with pytest.raises(ConfigError, match="option --peer"):
        Config().override(peers=("nohost",))


def test_chat_states_are_off_unless_turned_on() -> None:
    assert Config().chat_states is False
    assert config.parse("[xmpp]\nchat_states = true\n").chat_states is True
    assert Config().override(chat_states=True).chat_states is True
    assert Config().override(chat_states=None).chat_states is False  # option not given
    with pytest.raises(ConfigError, match="option --chat-states must be true or false"):
        Config().override(chat_states="on")


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PARANOIM_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == tmp_path / "xdg" / "paranoim"
    assert resolve_data_dir(None, str(tmp_path / "conf")) == tmp_path / "conf"
    monkeypatch.setenv("PARANOIM_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None, str(tmp_path / "conf")) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "cli"), str(tmp_path / "conf")) == tmp_path / "cli"


def test_advertise_is_an_address_others_can_dial() -> None:
    for good in ("192.0.2.7:45069", "node.example.org:1", "127.0.0.1:5", "[2001:db8::7]:9"):
        assert Config().override(announce=good).announce == good
    for bad, words in (("0.0.0.0:45069", "not an address others can reach"),
                       ("[::]:45069", "not an address others can reach"),
                       ("2001:db8::7:9", "in brackets"), ("http://x.org:1", "host:port"),
                       ("x.org", "host:port"), ("bad_name:1", "host name")):
        with pytest.raises(ConfigError, match=re.escape(words)) as info:
            Config().override(announce=bad)
        assert "option --advertise" in str(info.value)
    with pytest.raises(ConfigError, match=re.escape("'p2p.announce'")):
        config.parse('[p2p]\nannounce = "0.0.0.0:45069"\n')


def test_component_keys_and_their_secret(tmp_path: Path) -> None:
    cfg = config.parse('[xmpp]\nlistener = false\n[component]\ndomain = "P2P.Example.org"\n'
                       'server = "192.0.2.1:5347"\nuser_domains = ["example.org"]\n'
                       'secret = "s3cret"\n')
    assert (cfg.xmpp_listener, cfg.component_domain, cfg.component_server,
            cfg.component_user_domains) == (False, "p2p.example.org", "192.0.2.1:5347",
                                            ("example.org",))
    assert "s3cret" not in repr(cfg)
    assert config.component_secret(cfg, {}) == "s3cret"
    config.check_run(cfg, {})

    on = Config().override(component_domain="p2p.example.org")
    with pytest.raises(ConfigError, match="PARANOIM_COMPONENT_SECRET"):
        config.check_run(on, {})
    assert config.component_secret(on, {"PARANOIM_COMPONENT_SECRET": "env"}) == "env"
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    from_file = on.override(component_secret_file=str(secret))
    assert config.component_secret(from_file, {}) == "from-file"
    with pytest.raises(ConfigError, match="given twice"):
        config.component_secret(from_file, {"PARANOIM_COMPONENT_SECRET": "env"})
    with pytest.raises(ConfigError, match="cannot read the component secret file"):
        config.component_secret(on.override(component_secret_file=str(tmp_path / "no")), {})
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        config.component_secret(from_file, {})

    with pytest.raises(ConfigError, match="--no-xmpp-listener"):
        config.check_run(Config().override(xmpp_listener=False), {})
    with pytest.raises(ConfigError, match="option --component-domain"):
        Config().override(component_domain="bad domain")
    with pytest.raises(ConfigError, match="option --component-server"):
        Config().override(component_server="5347")
    with pytest.raises(ConfigError, match=re.escape("'component.user_domains'")):
        config.parse('[component]\nuser_domains = "example.org"\n')
