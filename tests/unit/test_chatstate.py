"""The outgoing chat-state throttle, driven by a hand-moved clock."""

from __future__ import annotations

from bridge.core.chatstate import ChatStateThrottle, Done, Send, Wait
from bridge.core.records import ChatState

K = ("alice", "bob")


def test_first_state_leaves_at_once_then_the_interval_holds_the_rest() -> None:
    t = ChatStateThrottle[tuple[str, str]](3.0)
    assert t.offer(K, ChatState.COMPOSING, now=100.0)  # start a flusher
    assert t.step(K, 100.0) == Send(ChatState.COMPOSING)
    assert t.step(K, 100.0) == Done()  # nothing waits: the flusher ends
    assert t.offer(K, ChatState.PAUSED, now=101.0)
    assert t.step(K, 101.0) == Wait(2.0)  # within the interval
    assert not t.offer(K, ChatState.COMPOSING, now=101.5)  # the flusher runs: no second
    assert t.step(K, 103.0) == Done()  # collapsed to composing, already the last sent


def test_latest_state_wins_and_a_message_cancels_what_waits() -> None:
    t = ChatStateThrottle[tuple[str, str]](3.0)
    t.offer(K, ChatState.COMPOSING, 0.0)
    assert t.step(K, 0.0) == Send(ChatState.COMPOSING)
    t.offer(K, ChatState.PAUSED, 1.0)
    t.offer(K, ChatState.GONE, 1.5)
    assert t.step(K, 3.0) == Send(ChatState.GONE)
    t.offer(K, ChatState.COMPOSING, 4.0)
    t.message_sent(K, 4.5)  # implies active; the waiting composing is out of date
    assert t.step(K, 6.0) == Done()
    assert t.offer(K, ChatState.ACTIVE, 10.0)
    assert t.step(K, 10.0) == Done()  # the message already told them: active


def test_a_failed_send_is_tried_again_even_if_equal() -> None:
    t = ChatStateThrottle[tuple[str, str]](1.0)
    t.offer(K, ChatState.COMPOSING, 0.0)
    assert t.step(K, 0.0) == Send(ChatState.COMPOSING)
    t.failed(K)
    t.offer(K, ChatState.COMPOSING, 0.5)
    assert t.step(K, 1.0) == Send(ChatState.COMPOSING)


def test_a_cancelled_flusher_lets_a_new_one_start() -> None:
    t = ChatStateThrottle[tuple[str, str]](1.0)
    assert t.offer(K, ChatState.COMPOSING, 0.0)
    t.stopped(K)
    assert t.offer(K, ChatState.PAUSED, 0.1)


def test_keys_are_bounded_and_only_idle_ones_are_forgotten() -> None:
    t = ChatStateThrottle[int](1.0, max_keys=10)
    for k in range(10):
        t.offer(k, ChatState.COMPOSING, 0.0)  # busy: kept
    t.offer(99, ChatState.COMPOSING, 0.0)
    assert len(t) == 11  # nothing idle to forget
    for k in range(10):
        assert t.step(k, 0.0) == Send(ChatState.COMPOSING)
        assert t.step(k, 0.0) == Done()
    t.offer(100, ChatState.PAUSED, 5.0)  # all of 0..9 idle past their interval
    assert len(t) <= 3
