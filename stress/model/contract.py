"""Contracts: who pays a loan's contracted rent (offtakers), whether that counterparty fails, and
whether a contract renews when it ends.

Offtaker o has a latent variable on every path, drawn once at the valuation date:
    Y_o = sqrt(rho_o) (l_o W + sqrt(1 - l_o^2) Z0) + sqrt(1 - rho_o) eta_o
with W the first-year AI demand factor (market.first_year_factor), Z0 the borrowers' copula
systematic normal and eta_o its own normal (stream STREAM_OFFTAKER, index o). It defaults in the
first month t with Y_o <= Phi^-1(1 - (1 - pd_o)^(t/12)), or in the scenario's
``offtaker.<name>.default_month`` if that comes first. From that month its contracts pay no rent,
their GPUs earn spot, and they leave the appraisal. A ``self`` contract (the borrower leases to
itself) has no draw: it runs while the loan lives and adds nothing to the recovery.

Renewal: at the end of a contract's last month t, while its offtaker is alive, one uniform U
(stream STREAM_RENEWAL, month t, index = loan): if U < renewal_prob the contract runs another
renewal_months months at the spot price of month t x (1 + renewal_premium). The contract state is
per (scenario, path, loan), the same for every tenor.

Cash flows in a month are those of a contract that is on (``ContractParams.*_on``) or off
(``*_off``); ``cash_flow_tables`` builds both from the number of contracted GPUs, and the signed
schedule of a run without offtakers from the same arithmetic. CUDA twins: ``offtaker_latent``,
``contract_on`` and ``renewal_price`` in kernels/model.cuh, called by engine.cu.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.scenario import shocked_path, shocked_scalar
from ..config.schema import SELF
from ..errors import TapeError
from . import rng
from .recovery import HOURS_PER_MONTH

NEVER = np.iinfo(np.int32).max  # default month of an offtaker that never defaults (and of none and self)


def cash_flow_tables(cfg, tape, alive, contracted) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(contracted GPU-hours (L, H), merchant GPU-hours (L, H), opex not proportional to utilisation
    (S, L, H) USD, opex per unit of utilisation (S, L, H) USD) of ``alive`` GPUs (L, H) of which
    ``contracted`` (L, H) are under contract; months 1..H."""
    t_all = np.arange(1, alive.shape[1] + 1)
    merchant = alive - contracted
    full_power = np.stack([shocked_path(sc.shocks, "power_price", tape.power_price[:, None], t_all)
                           for sc in cfg.scenario.values()])
    full_power = full_power * (tape.pue * np.array([cfg.market.chips[c].power_kw for c in tape.chip]))[None, :, None] * HOURS_PER_MONTH
    idle = cfg.market.utilization.idle_power_share
    u_ref = np.array([cfg.market.chips[c].reference_utilization for c in tape.chip])
    contracted_draw = contracted * (idle + (1.0 - idle) * u_ref[:, None])
    opex_base = (alive * tape.opex_fixed[:, None])[None] + full_power * (contracted_draw + merchant * idle)[None]
    opex_slope = full_power * (merchant * (1.0 - idle))[None]
    return contracted * HOURS_PER_MONTH, merchant * HOURS_PER_MONTH, opex_base, opex_slope


@dataclass(frozen=True)
class ContractParams:
    """Host arrays of the contracts: S scenarios, L loans, O offtakers with a draw, H market months."""

    names: tuple[str, ...]  # the offtaker coordinate: the declared offtakers, then self if the tape uses it
    of_loan: np.ndarray  # (L,) index into names; -1 = no offtaker; len(drawn) = self
    drawn: int  # O: offtakers with a default draw (names[:O])
    sqrt_rho: np.ndarray  # (O,) sqrt(rho_o)
    loading: np.ndarray  # (O,) l_o
    loading_c: np.ndarray  # (O,) sqrt(1 - l_o^2)
    idio: np.ndarray  # (O,) sqrt(1 - rho_o)
    threshold: np.ndarray  # (S, O, H) Phi^-1 of the cumulative PD of months 1..H
    forced: np.ndarray  # (S, O) int64 month the scenario fails the offtaker, 0 = none
    months: np.ndarray  # (L,) int64 last month of the signed contract
    price: np.ndarray  # (L,) USD/GPU-h of the signed contract
    renewal_prob: np.ndarray  # (S, L)
    renewal_months: np.ndarray  # (L,) int64
    renewal_factor: np.ndarray  # (L,) 1 + renewal_premium
    hours_on: np.ndarray  # (L, H) contracted GPU-hours while the contract is on
    merchant_on: np.ndarray  # (L, H) merchant GPU-hours while it is on
    base_on: np.ndarray  # (S, L, H)
    slope_on: np.ndarray  # (S, L, H)
    merchant_off: np.ndarray  # (L, H) every alive GPU at spot
    base_off: np.ndarray  # (S, L, H)
    slope_off: np.ndarray  # (S, L, H)

    @property
    def self_index(self) -> int:
        return self.drawn


def build(cfg, tape, alive, horizon: int) -> ContractParams | None:
    """The contracts of the tape's offtaker column (None when every cell is blank: the signed schedule
    of the tape, as without offtakers); TapeError naming the lines of an undeclared offtaker."""
    used = np.asarray(tape.offtaker, dtype=object)
    if not (used != "").any():
        return None
    declared = cfg.portfolio.offtakers
    drawn = tuple(o for o in declared if o != SELF)
    unknown = [(line, lid, o) for line, lid, o in zip(tape.line, tape.loan_id, used) if o and o != SELF and o not in drawn]
    if unknown:
        listed = "; ".join(f"line {line} (loan_id {lid!r}), column 'offtaker': unknown offtaker {o!r}"
                           for line, lid, o in unknown[:10])
        raise TapeError(f"{tape.source}: {listed}. Declare it in portfolio.offtakers (declared: "
                        f"{', '.join(drawn) or 'none'}), or write self (the borrower itself) or leave the cell blank")
    names = drawn + ((SELF,) if (used == SELF).any() else ())
    index = {o: i for i, o in enumerate(names)}
    of_loan = np.array([index.get(o, -1) for o in used], dtype=np.int64)
    scen = list(cfg.scenario.values())
    t = np.arange(1, horizon + 1)
    pd = np.array([[np.clip(declared[o].pd_annual * shocked_scalar(sc.shocks, f"offtaker.{o}.pd_multiplier", 1.0), 0.0, 1.0)
                    for o in drawn] for sc in scen]).reshape(len(scen), len(drawn))
    with np.errstate(divide="ignore"):
        cumulative = -np.expm1(np.log1p(-pd)[:, :, None] * t[None, None, :] / 12.0)
    from scipy.special import ndtri  # imported here: `import stress` stays light

    threshold = ndtri(np.where(pd[:, :, None] >= 1.0, 1.0, cumulative))
    forced = np.array([[int(shocked_scalar(sc.shocks, f"offtaker.{o}.default_month", 0.0)) for o in drawn]
                       for sc in scen], dtype=np.int64).reshape(len(scen), len(drawn))
    rho = np.array([declared[o].asset_corr for o in drawn], dtype=float)
    load = np.array([declared[o].demand_loading for o in drawn], dtype=float)
    terms = {name: np.array([getattr(declared[o], name) if o in declared else default for o in used], dtype=float)
             for name, default in (("renewal_prob", 0.0), ("renewal_months", 0), ("renewal_premium", 0.0))}
    renewal_prob = np.stack([np.array([shocked_scalar(sc.shocks, "renewal_prob", p) for p in terms["renewal_prob"]])
                             for sc in scen])
    share = tape.contracted_share[:, None] * alive
    hours_on, merchant_on, base_on, slope_on = cash_flow_tables(cfg, tape, alive, share)
    _, merchant_off, base_off, slope_off = cash_flow_tables(cfg, tape, alive, np.zeros_like(alive))
    return ContractParams(
        names=names, of_loan=of_loan, drawn=len(drawn), sqrt_rho=np.sqrt(rho), loading=load,
        loading_c=np.sqrt(1.0 - load**2), idio=np.sqrt(1.0 - rho), threshold=threshold, forced=forced,
        months=tape.contract_months.astype(np.int64), price=tape.contract_price.astype(float),
        renewal_prob=renewal_prob, renewal_months=terms["renewal_months"].astype(np.int64),
        renewal_factor=1.0 + terms["renewal_premium"], hours_on=hours_on, merchant_on=merchant_on, base_on=base_on,
        slope_on=slope_on, merchant_off=merchant_off, base_off=base_off, slope_off=slope_off)


def latent(xp, cp: ContractParams, w, z0, eta):
    """Y (P, O) of the offtakers from W (P,), Z0 (P,) and their own normals eta (P, O)."""
    return (xp.asarray(cp.sqrt_rho) * (xp.asarray(cp.loading) * w[:, None] + xp.asarray(cp.loading_c) * z0[:, None])
            + xp.asarray(cp.idio) * eta)


def default_months(xp, cp: ContractParams, y):
    """(S, P, O) int64: the first month t <= H with Y <= threshold(t), NEVER if none, or the scenario's
    forced month if it is earlier."""
    S, O, H = cp.threshold.shape
    first = xp.full((S,) + y.shape, NEVER, dtype=xp.int64)
    for i in range(H - 1, -1, -1):  # from the last month back: the earliest hit is written last
        first[y[None] <= xp.asarray(cp.threshold[:, :, i])[:, None, :]] = i + 1
    forced = xp.asarray(cp.forced)[:, None, :]
    return xp.where((forced > 0) & (forced < first), forced, first)


@dataclass
class ContractState:
    """Per (scenario, path, loan) cell, shape (S, P, L): the contract in force."""

    end: object  # int64 last month of the signed contract (renewals included)
    price: object  # float64 USD/GPU-h
    fails: object  # int64 month its offtaker defaults (NEVER: none, self, or never)

    @classmethod
    def start(cls, xp, cp: ContractParams, offtaker_month, shape) -> "ContractState":
        """The tape's contracts, and the default month of each loan's offtaker from ``offtaker_month`` (S, P, O)."""
        of_loan = xp.asarray(cp.of_loan)
        drawn = (of_loan >= 0) & (of_loan < cp.drawn)
        fails = xp.where(drawn, offtaker_month[:, :, xp.where(drawn, of_loan, 0)], NEVER) if cp.drawn else \
            xp.full(shape, NEVER, dtype=xp.int64)
        return cls(end=xp.broadcast_to(xp.asarray(cp.months), shape).copy(),
                   price=xp.broadcast_to(xp.asarray(cp.price), shape).copy(), fails=fails)

    def on(self, t: int):
        """(S, P, L) bool: month t is under contract (signed, and its offtaker has not failed)."""
        return (t <= self.end) & (t < self.fails)

    def months_left(self, xp, cp: ContractParams, t: int, sale: bool = False):
        """(S, P, L) int64 contract months after month t that an appraisal counts: 0 once the offtaker has
        failed; at a sale (``sale``) also 0 for a self contract, which ends with the borrower."""
        live = t < self.fails
        if sale:
            live = live & (xp.asarray(cp.of_loan) != cp.self_index)
        return xp.where(live, self.end - t, 0)

    def renew(self, xp, cp: ContractParams, seed: int, paths, t: int, spot) -> None:
        """End of month t: contracts whose last month is t and whose offtaker is alive renew with
        probability renewal_prob for renewal_months at ``spot`` (S, P, L) x (1 + premium)."""
        due = (self.end == t) & (t < self.fails)
        if not bool(due.any()):
            return
        u = rng.uniforms(xp, seed, paths[:, None], t, rng.STREAM_RENEWAL, xp.arange(cp.months.shape[0])[None, :])
        renew = due & (u[None] < xp.asarray(cp.renewal_prob)[:, None, :])
        self.end = xp.where(renew, self.end + xp.asarray(cp.renewal_months), self.end)
        self.price = xp.where(renew, spot.astype(xp.float64) * xp.asarray(cp.renewal_factor), self.price)
