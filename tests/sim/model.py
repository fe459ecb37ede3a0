"""The model for sizes too large to simulate in full, calibrated on simulated runs.

Per honest node per day:

* stored  = e · S · (m · u + spam), where S is the envelope size, m = nodes per shard
  (all nodes in full replication), u = honest messages per user per day and spam the
  flooders' envelopes per node of the shard per day; e (near 1: the share of
  envelopes a node was online to receive) is calibrated;
* sent    = c · stored + f: c is the bytes sent per byte stored (bodies passed on, HAVE
  and WANT ids to every neighbour), f the traffic that does not grow with envelopes
  (reconciliation rounds, peer exchange, HELLOs, in sharded mode lookups and
  hand-offs), both calibrated.

Full replication makes m = N, so both grow linearly with the network; sharding holds
m near a constant by growing k, so both stay flat. The smallest simulated run of each
mode calibrates (e, c, f); the larger simulated runs check the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.sim.world import Result


@dataclass(frozen=True)
class Fit:
    e: float
    c: float
    f: float


def _load(r: Result, shard_nodes: float, flooders: float | None = None) -> float:
    """Envelope bytes a node of a shard of ``shard_nodes`` nodes takes in per day.

    ``flooders`` is the share of flooding nodes: the run's own when calibrating on it
    (small networks round it), half the hostile share when predicting.
    """
    cfg = r.cfg
    u = cfg.rate * 24 * (1 - cfg.hostile)
    share = cfg.hostile / 2 if flooders is None else flooders
    spam = share * cfg.flood_rate * 86400
    return r.env_size * shard_nodes * (u + spam)


def calibrate(results: list[Result]) -> dict[str, Fit]:
    fits: dict[str, Fit] = {}
    for family in ("full", "k"):
        runs = sorted((r for r in results if r.mode.startswith(family)), key=lambda r: r.nodes)
        if not runs:
            continue
        r = runs[0]
        load = _load(r, r.shard_nodes, r.flooders)
        e = r.stored_per_day / load if load else 1.0
        c = r.sent_env_per_day / r.stored_per_day if r.stored_per_day else 0.0
        f = r.sent_per_day - r.sent_env_per_day
        fits[family] = Fit(e, c, f)
    return fits


def predict(fits: dict[str, Fit], r_like: Result | None, nodes: int, mode: str,
            shard_nodes: float) -> tuple[float, float] | None:
    """(sent, stored) bytes per node per day, or None without a calibration for the mode."""
    family = "full" if mode == "full" else "k"
    fit = fits.get(family)
    if fit is None or r_like is None:
        return None
    stored = fit.e * _load(r_like, shard_nodes)
    return fit.c * stored + fit.f, stored
