"""Attacks on a real daemon: each test runs an attacker process against a real
`paranoim run` over its real P2P port and asserts that the victim's budgets hold."""
