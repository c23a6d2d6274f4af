// Device functions of one month of the model for one path, one scenario, one loan:
// market step, utilisation, CFADS, collateral value, the debt waterfall and default rules, and the
// liquidation after default. Each function is the per-cell arithmetic of the numpy reference
// (stress/market.py, waterfall.py, recovery.py, engine.py) in the same order of operations, so that
// the float64 host build agrees with numpy to the last bit or two; the file and function named
// beside each one is its reference.
//
// T is the engine's float type (double or float). As in the numpy engine, the market factors and the
// random numbers are always float64 and are rounded to T where a loan first uses them; everything
// per loan is computed in T. Money in USD, prices in USD per GPU-hour, rates per month unless named
// annual, months t = 1, 2, ... counted from the valuation date.
#pragma once
#include "philox.cuh"

namespace model {

// Default causes, in stress.model.waterfall.CAUSES order; a lower code has priority.
enum Cause : int { NONE = 0, PAYMENT = 1, COVENANT = 2, REFINANCING = 3, EXOGENOUS = 4 };
constexpr int N_CAUSES = 4;  // codes 1..4 (cause_count columns)

constexpr double ROUNDING = 1e-9;  // waterfall.ROUNDING: a shortfall below this share of debt service counts as paid

// np.maximum / np.minimum / np.clip: NaN propagates from either argument.
template <typename T>
__host__ __device__ __forceinline__ T np_maximum(T a, T b) {
  return (a >= b || a != a) ? a : b;
}
template <typename T>
__host__ __device__ __forceinline__ T np_minimum(T a, T b) {
  return (a <= b || a != a) ? a : b;
}
template <typename T>
__host__ __device__ __forceinline__ T np_clip(T x, T lo, T hi) {
  return np_minimum(np_maximum(x, lo), hi);
}

// ---------------------------------------------------------------------------------------------
// Market factors (market.advance), float64, per (scenario, path).

// AR(1) step of a unit-variance factor: persistence x + sqrt(1 - persistence^2) innovation; the scale
// is precomputed on the host with numpy (demand: phi, chip noise: psi).
__host__ __device__ __forceinline__ double ar1_step(double x, double persistence, double scale, double innovation) {
  return persistence * x + scale * innovation;
}

// Share of a launch's log price step in force at month t: linear over `ramp` months from the (jittered)
// launch month, or all at once when ramp = 0.
__host__ __device__ __forceinline__ double launch_share(int t, double launch_month, double ramp) {
  const double elapsed = static_cast<double>(t) - launch_month;
  if (ramp == 0.0) return elapsed >= 0.0 ? 1.0 : 0.0;
  return np_clip(elapsed / ramp, 0.0, 1.0);
}

// log P_c(t) = log P_c(0) - g_c t + kappa_c I_t + sigma_c X_c(t) + J(t), with I_t the scenario-shocked
// demand innovation since the valuation date, a (D_t - phi^t D_0) + b (market.advance).
__host__ __device__ __forceinline__ double log_spot_price(double log_price0, double trend_monthly, int t, double kappa,
                                                          double innovation, double sigma, double noise, double jump) {
  return (log_price0 - trend_monthly * static_cast<double>(t)) + kappa * innovation + sigma * noise + jump;
}

// Spot price after the scenario's price shock a P + b, floored at 0, USD/GPU-h.
__host__ __device__ __forceinline__ double spot_price(double shock_a, double shock_b, double log_price) {
  return np_maximum(shock_a * exp(log_price) + shock_b, 0.0);
}

// appraisal.expected_prices and appraisal.appraise, one term of the expected-rent sum: the median
// expected spot price E = max(0, a exp(mu) + b) h months ahead (log_spot_price at month t + h with the
// reverted demand term a_D phi^h (D_t - phi^t D_0) + b_D and noise scale sigma psi^h), then its
// discounted operating margin (d q)^h max(0, 730 u E - o), USD per GPU.
__host__ __device__ __forceinline__ double appraisal_rent(double expected, double hours_u, double opex, double discount) {
  return np_maximum(hours_u * expected - opex, 0.0) * discount;
}

// appraisal.appraise for one loan from the chip's cumulative sums: merchant S(n) - c S(m) plus the
// contract c (730 p - o) G(m), floored at scrap; n = physical life left, m = contract months within it.
__host__ __device__ __forceinline__ double appraisal_value(double sum_life, double sum_contract, double share,
                                                           double contract_rent, double opex, double annuity,
                                                           double scrap) {
  return np_maximum(sum_life - share * sum_contract + share * (contract_rent - opex) * annuity, scrap);
}

// ---------------------------------------------------------------------------------------------
// Offtakers and contract renewals (stress/model/contract.py), float64.

// contract.latent: Y_o = sqrt(rho_o) (l_o W + sqrt(1 - l_o^2) Z0) + sqrt(1 - rho_o) eta_o.
__host__ __device__ __forceinline__ double offtaker_latent(double sqrt_rho, double loading, double loading_c,
                                                           double idio, double w, double z0, double eta) {
  return sqrt_rho * (loading * w + loading_c * z0) + idio * eta;
}

// ContractState.on: month t is under contract while t <= the contract's last month and before its
// offtaker's default month.
__host__ __device__ __forceinline__ bool contract_on(int t, int end, int fails) { return t <= end && t < fails; }

// ContractState.renew: the renewed contract's price, the spot price of its last month (as the loan
// sees it, in T) x (1 + renewal premium), USD/GPU-h.
__host__ __device__ __forceinline__ double renewal_price(double spot, double factor) { return spot * factor; }

// ---------------------------------------------------------------------------------------------
// Loan cash flows, in T.

// market.utilization: u_max logistic(a_c + beta D_t + sigma_u n) under the utilisation shock a u + b,
// clipped to [0, 1]. `demand` is the shocked demand rounded to T, `noise` the loan's normal.
template <typename T>
__host__ __device__ __forceinline__ T utilization(T intercept, T beta, T demand, T sigma_u, T noise, T u_max,
                                                  T shock_a, T shock_b) {
  const T z = intercept + beta * demand + sigma_u * noise;
  const T u = u_max / (T(1) + exp(-z));
  return np_clip(shock_a * u + shock_b, T(0), T(1));
}

// montecarlo.simulate: CFADS = contract revenue - opex not proportional to utilisation
//                          + u (merchant GPU-hours x spot price - opex per unit of utilisation), USD.
template <typename T>
__host__ __device__ __forceinline__ T cfads(T contract_revenue, T opex_base, T util, T merchant_hours, T price,
                                            T opex_slope) {
  return contract_revenue - opex_base + util * (merchant_hours * price - opex_slope);
}

// recovery.collateral_value: V = max(P income - cost, scrap), USD per GPU.
template <typename T>
__host__ __device__ __forceinline__ T collateral_value(T price, T income, T cost, T scrap) {
  return np_maximum(price * income - cost, scrap);
}

// recovery.liquidation_proceeds: alive GPUs x V (1 - haircut)(1 - sale cost) x the fire sale's `keep`
// (1 = none: the same bits), at least `floor` USD per alive GPU (residual value guarantee, 0 = none:
// the sale is >= 0, so the same bits), + reserve,
// capped at the exposure and discounted over the lag at the loan's annual rate, USD at the default date.
// `keep_after_sale` = 1 - sale cost, rounded to T from float64 as numpy does with the Python float.
template <typename T>
__host__ __device__ __forceinline__ T liquidation_proceeds(T gpus_alive, T value, T haircut, T keep_after_sale,
                                                           T keep, T floor, T reserve, T exposure, T annual_rate,
                                                           int lag_months) {
  const T sale = np_maximum(gpus_alive * value * (T(1) - haircut) * keep_after_sale * keep, gpus_alive * floor);
  return np_minimum(sale + reserve, exposure) * pow(T(1) + annual_rate / T(12), T(-lag_months));
}

// ---------------------------------------------------------------------------------------------
// Debt waterfall and default rules (waterfall.step), one (tenor, loan) cell.

// Channels and thresholds common to all loans (waterfall.Rules).
template <typename T>
struct Rules {
  bool payment, covenant, refinancing, exogenous;
  int cure_months;  // consecutive months of LTV > ltv_max before a covenant default
  T refi_ltv_max;   // a bullet or balloon above this LTV at maturity cannot refinance
  bool cash_trap;   // while LTV > ltv_max all excess cash prepays principal
  int max_cures;    // equity cures of an LTV breach over the life
};

// State of a cell carried from month to month.
template <typename T>
struct Cell {
  T balance;   // outstanding principal, USD
  T reserve;   // debt service reserve, USD
  T service1;  // debt service of the last two months, USD
  T service2;
  int breach;  // consecutive months with LTV above ltv_max
  int cures;   // equity cures used so far
  T capacity;  // equity the sponsor can still inject, USD
  T injected;  // equity injected by this month's cure, USD
};

// What the month brings before cross-default and commit.
template <typename T>
struct Month {
  T paid_balance;  // b1: balance after the regular payment and any cash sweep
  T paid_reserve;  // r1: reserve after topping up or drawing
  T service;       // debt service due this month, USD
  int cause;       // the loan's own default cause, 0 = none
};

// Cash flows of month t for a live cell (neither defaulted nor repaid): debt service, reserve, cash
// sweep and the loan's own default cause, in waterfall.step's order and priority (payment > covenant
// > refinancing > exogenous). The reserve pays any shortfall of CFADS against the debt service; a
// surplus tops it up to its target, the rest is released, or swept to prepay principal while the
// trailing three-month DSCR is below dscr_min (or, with the cash trap, while LTV > ltv_max). A breach
// for cure_months is first offered an equity cure (balance back to ltv_limit, before interest) if
// max_cures and the capacity allow. Updates the breach counter, the cures and the debt-service history. waterfall.step also runs cells that are no longer live, without events; the
// kernel skips them. ltv_limit = ltv_max x collateral, refi_limit = refi_ltv_max x collateral, USD.
template <typename T>
__host__ __device__ __forceinline__ Month<T> waterfall_month(Cell<T>& c, const Rules<T>& rules, T cf, T cf1, T cf2,
                                                             T ltv_limit, T refi_limit, T monthly_rate,
                                                             T regular_balance, T reserve_target, T dscr_min,
                                                             bool at_maturity, bool refinanced, bool exogenous_hit) {
  T b0 = c.balance;
  const T r0 = c.reserve;
  bool breached = b0 > ltv_limit;
  c.breach = (c.breach + 1) * int(breached);
  c.injected = T(0);
  if (rules.max_cures > 0 && rules.covenant) {
    const T cure = np_maximum(b0 - ltv_limit, T(0));
    if (c.breach >= rules.cure_months && c.cures < rules.max_cures && cure <= c.capacity) {
      c.injected = cure;
      b0 = b0 - cure;
      c.balance = b0;  // the exposure of a later default this month is net of the cure
      c.capacity = c.capacity - cure;
      c.cures += 1;
      c.breach = 0;
      breached = false;
    }
  }
  const T due = np_maximum(b0 - regular_balance, T(0));
  const T service = b0 * monthly_rate + due;
  const T cash = r0 + (cf - service);  // reserve after the service is paid from CFADS; < 0: shortfall
  const T cap = np_maximum(r0, reserve_target);
  const T r1 = np_minimum(np_maximum(cash, T(0)), cap);
  const T excess = np_maximum(cash - cap, T(0));
  const bool sweep = (cf + cf1 + cf2) < dscr_min * (service + c.service1 + c.service2) || (rules.cash_trap && breached);
  T b1 = b0 - due;
  b1 = b1 - np_minimum(excess, b1) * T(sweep);

  int cause = NONE;  // lowest priority first, as waterfall.step overwrites
  if (rules.exogenous && exogenous_hit) cause = EXOGENOUS;
  if (rules.refinancing && at_maturity && refinanced && b1 > refi_limit) cause = REFINANCING;
  if (rules.covenant && c.breach >= rules.cure_months) cause = COVENANT;
  if (rules.payment && cash < T(-ROUNDING) * service) cause = PAYMENT;

  c.service2 = c.service1;
  c.service1 = service;
  return Month<T>{b1, r1, service, cause};
}

// Exposure and reserve recorded at default: the loan's own refinancing default happens after the
// month's regular instalment (b1, r1); any other default, a cross-default included, pre-empts the
// payment (opening b0, r0). `own_cause` is the loan's own cause, before cross-default.
template <typename T>
struct DefaultRecord {
  T exposure;  // outstanding principal at default, USD
  T reserve;   // reserve balance at default, USD
};

template <typename T>
__host__ __device__ __forceinline__ DefaultRecord<T> default_record(const Cell<T>& c, const Month<T>& m, int own_cause) {
  return own_cause == REFINANCING ? DefaultRecord<T>{m.paid_balance, m.paid_reserve}
                              : DefaultRecord<T>{c.balance, c.reserve};
}

// A live loan that does not default pays: the cell moves to (b1, r1).
template <typename T>
__host__ __device__ __forceinline__ void pay(Cell<T>& c, const Month<T>& m) {
  c.balance = m.paid_balance;
  c.reserve = m.paid_reserve;
}

}  // namespace model
