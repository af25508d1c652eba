"""Uplink power model of paper 004 Table III (after Huang et al., MobiSys 2012).

P_u = alpha_u * t_u + beta, with t_u the uplink throughput in Mbit/s, alpha_u in
mW per Mbit/s and beta in mW. Returned here in watts.
"""

from __future__ import annotations

from typing import NamedTuple


class RadioModel(NamedTuple):
    nominal_uplink_bps: float  # the paper's average U.S. uplink for this radio
    alpha_mw_per_mbps: float
    beta_mw: float


# Paper 004, Table III.
RADIOS = {
    "3g": RadioModel(1.1e6, 868.98, 817.88),
    "4g": RadioModel(5.85e6, 438.39, 1288.04),
    "wifi": RadioModel(18.88e6, 283.17, 132.86),
}


def uplink_power_w(radio: str, throughput_bps: float) -> float:
    try:
        model = RADIOS[radio]
    except KeyError:
        raise ValueError(f"unknown radio {radio!r}; known: {sorted(RADIOS)}") from None
    return (model.alpha_mw_per_mbps * throughput_bps / 1e6 + model.beta_mw) / 1000.0
