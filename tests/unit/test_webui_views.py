"""Pure view helpers: how a real node's peer record and a vanity job's status are shown."""

from __future__ import annotations

from dataclasses import dataclass

from webui.views.node import peer_view
from webui.views.vanity import progress_data


def test_outbound_peer_as_the_real_node_reports_it() -> None:
    view = peer_view(
        {
            "address": "127.0.0.1:45069",
            "remote": "127.0.0.1",
            "direction": "out",
            "node_id": "9d9d9e2e26b0c53c" * 2,
            "light": False,
            "min_bits": 8,
            "state": "active",
            "bytes_in": 1300,
            "bytes_out": 2600,
            "since": 1_700_000_000,
        }
    )
    assert view["address"] == view["label"] == "127.0.0.1:45069"
    assert (view["state"], view["badge"]) == ("connected", "up")
    assert view["meta"][0] == "we connected to them"
    assert "1.3 KB in, 2.5 KB out" in view["meta"]
    assert view["node_id"] == "9d9d9e2e26b0c53c"


def test_inbound_peer_without_a_listening_address_cannot_be_removed_by_name() -> None:
    view = peer_view(
        {"address": "", "remote": "192.0.2.9", "direction": "in", "state": "hello_received"}
    )
    assert view["address"] == "" and view["label"] == "192.0.2.9 (inbound)"
    assert (view["state"], view["badge"]) == ("greeting", "waiting")
    assert view["meta"] == ["they connected to us"]


def test_peer_added_but_not_reached_and_unknown_fields() -> None:
    view = peer_view({"address": "192.0.2.7:45069", "state": "connecting", "direction": "out"})
    assert (view["state"], view["badge"]) == ("connecting", "waiting")
    assert peer_view({})["label"] == "(unknown)"


@dataclass
class Status:
    attempts: int = 0
    rate: float = 0.0
    elapsed: float = 0.0
    expected_attempts: float = 1024.0
    done: bool = False
    cancelled: bool = False
    error: str = ""
    address: str = ""


def test_vanity_states_as_the_service_reports_them() -> None:
    assert progress_data(Status(attempts=10, rate=5.0))["state"] == "running"
    # the service reports a cancel as an error "cancelled" too: it is shown as cancelled
    assert progress_data(Status(done=True, cancelled=True, error="cancelled"))["state"] == (
        "cancelled"
    )
    assert progress_data(Status(done=True, error="disk full"))["state"] == "error"
    found = progress_data(Status(attempts=900, done=True, cancelled=True, address="ab" * 28))
    assert (found["state"], found["fraction"]) == ("done", 1.0)
