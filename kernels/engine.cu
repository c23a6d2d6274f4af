// The fused Monte Carlo kernel: every month of every loan of one (scenario, path), all tenors, from
// the valuation date to the sale of the last defaulted collateral. GPU twin of stress.engine.montecarlo.simulate
// (the numpy reference); compiled by CuPy/NVRTC or nvcc for the GPU, and as host C++ by
// stress/engine/hostkernel.py (g++ -include host_shim.h) for the CPU parity tests.
//
// Parallel decomposition: one thread per (scenario, path), looping over months, loans and tenors.
//   - Not per (scenario, tenor, path): the random numbers, market factors, utilisation, CFADS and
//     collateral values do not depend on the tenor (the transcendental part of a loan-month: half a
//     Philox block, log, sqrt, sin, cos and exp), so a thread computes them once for all K tenors.
//     S x P threads (7 x 10^6 for a million paths and 7 scenarios) still fill any GPU.
//   - Not per loan: cross-default couples the loans of a borrower within a month, and the portfolio
//     loss is a sum over loans, so all loans of a path live in one thread with no synchronisation.
// Threads grid-stride over the S x P work items, so the launch size (and with it the scratch
// memory) is chosen by the caller, independent of the number of paths.
//
// Random numbers are regenerated from Philox counters where they are used (philox.cuh);
// no normal is stored. State lives in a per-thread scratch of O(K L + L + C + N + T) values
// (below); memory never grows with paths x loans x months.
//
// Arithmetic follows the numpy engine operation by operation. The host build (no FMA contraction)
// differs from numpy only where numpy's SIMD exp, log and pow round the last bit unlike libm's; on
// the GPU, nvcc's default --fmad=true and CUDA's own exp/log/sin/cos/pow add a few ulp (--fmad=false
// removes the first).
//
// ------------------------------------------------------------------------------------------------
// Arguments (all arrays C-contiguous; S scenarios, K tenors, L loans, C chips, N launches,
// B borrowers, T loan months, H = T + lag market months, P paths in this chunk, F fan paths in it)
//
// config (int64[CFG_SIZE]): S, K, L, C, N, B, T, lag, P, first_path (global index of the chunk's
//   first path, the Philox counter), F, seed low 32 bits, seed high 32 bits, channel bits
//   (1 payment, 2 covenant, 4 refinancing, 8 exogenous), cross_default (0/1), cure_months, cash_trap
//   (0/1), max_cures, appraisal_months (0 = spot valuation), appraisal window W (months), number of
//   facilities with tranches Fa (0 = none), offtakers with a default draw O, contracts (0/1: the tape
//   has offtakers; 0 = the signed schedule of contract_revenue, merchant_hours and opex).
//
// reals (float64), the Problem arrays flattened one after the other, in this order:
//   scalars[12]         phi, sqrt(1 - phi^2), u_max, util_beta, util_sigma, refi_ltv_max, sale_cost,
//                       demand_corr r, sqrt(1 - r^2), phi^12, sqrt(1 - phi^24), price_impact (0 = no fire sale)
//   demand_decay[H]     phi^t for t = 1..H
//   log_price0[C]       log USD/GPU-h          trend_monthly[C]   log decline per month
//   kappa[C]            demand loading         sigma[C]           chip noise scale
//   psi[C]              chip noise persistence noise_scale[C]     sqrt(1 - psi^2)
//   util_intercept[C]   logit intercept        inverse_depth[C]   1 / market depth, per GPU (0 = infinite)
//   launch_ramp[N], launch_jitter[N]           months
//   launch_month[S,N]   scheduled month        launch_log_step[S,N]  log(1 - step)
//   demand_a[S,H], demand_b[S,H], util_a[S,H], util_b[S,H]   scenario shock maps a x + b
//   haircut[S,H]        distressed-sale discount, 0..1
//   price_a[S,C,H], price_b[S,C,H]             price shock maps
//   principal[L], dscr_min[L], ltv_max[L]      USD, 1, 1
//   copula_load[L]      sqrt(rho)              copula_idio[L]     sqrt(1 - rho)
//   scrap[L]            USD per GPU            cure_capacity[L]   USD the sponsor can inject
//   rvg[L]              residual value guarantee, USD per alive GPU (0 = none)
//   reserve_target[K,L] USD                    regular_balance[K,T,L]  USD after the regular payment
//   monthly_rate[S,T,L] loan rate per month    exogenous_threshold[S,T,L]  Phi^-1(cumulative PD)
//   gpus_alive[H,L], contract_revenue[H,L] (USD), merchant_hours[H,L] (GPU-h),
//   value_income[H,L] (USD per USD/GPU-h), value_cost[H,L] (USD)
//   opex_base[S,H,L], opex_slope[S,H,L]        USD, USD per unit of utilisation
//   (the per-month tables are month-major, loan last: a month's loop over the loans reads them in
//   order, which keeps a large tape's tables streaming through the cache)
// With appraisal_months > 0 (market.valuation.method=appraisal), then:
//   ap_discount[C,W+1]  (d q_c)^h              ap_annuity[C,W+1]  sum_{h<=m} (d q_c)^h
//   ap_hours_u[C]       730 u_c                ap_opex[S,C,H+1]   reference opex of month t, USD/GPU-month
//   ap_life[L], ap_contract_months[L]          months     ap_share[L], ap_rent[L] (730 p_i), ap_gpus[L]
//   ap_phi_pow[W+1]     phi^h                  ap_psi_pow[C,W+1]  psi_c^h   (h = 0..W)
// With contracts = 1 (stress.model.contract.ContractParams), then:
//   off_sqrt_rho[O], off_loading[O], off_loading_c[O], off_idio[O]   latent-variable weights
//   off_threshold[S,O,H] Phi^-1(cumulative PD)  ct_price[L] USD/GPU-h   ct_renewal_prob[S,L]
//   ct_renewal_factor[L] 1 + premium           ct_hours_on[H,L], ct_merchant_on[H,L], ct_merchant_off[H,L] GPU-h
//   ct_base_on[S,H,L], ct_slope_on[S,H,L], ct_base_off[S,H,L], ct_slope_off[S,H,L]  USD
// ints (int32): chip_of_loan[L], refinanced[L] (0/1), borrower_of_loan[L] (0..B-1), tenor[K,L],
//   facility_of_loan[L] (0..Fa-1, -1 = in no facility with tranches); with contracts = 1 then
//   ct_offtaker[L] (0..O-1 drawn, O = self, -1 = none), ct_months[L], ct_renewal_months[L], off_forced[S,O] (0 = none).
// The simulate_layout kernel returns the lengths the kernel expects, for the caller to check.
//
// Outputs (accumulators zeroed and fans NaN-filled by the caller; optional ones may be null):
//   loss[S,K,P] f64                portfolio loss of each path, USD
//   loan_loss[S,K,L] f64           sum over paths of the loan's loss, USD           (atomicAdd)
//   loan_defaults[S,K,L] u64       number of paths where the loan defaults          (atomicAdd)
//   loan_lgd[S,K,L] f64            sum over defaults of loss / exposure              (atomicAdd)
//   defaulted_exposure[S,K,T] f64  exposure at default by default month, USD         (atomicAdd)
//   cause_count[S,K,4] u64         defaults by cause (payment, covenant, refinancing, exogenous)
//   price_fan[S,F,C,T] f64         spot prices of the fan paths (null when F = 0)
//   ltv_fan[S,K,F,T], dscr_fan[S,K,F,T] f64  principal-weighted LTV and DSCR of live loans
//   default_month[S,K,P,L] i16, default_cause[S,K,P,L] i8   per path detail (null unless asked)
//   loan_equity[S,K,L], loan_equity_sq[S,K,L] f64  sums over paths of the equity cures of a cell and of
//                                  their squares, USD (null without cures)               (atomicAdd)
//   loan_equity_lost[S,K,L], loan_equity_lost_sq[S,K,L] f64  the same for the equity of cells that later
//                                  default (lost by the sponsor); null without cures       (atomicAdd)
//   facility_loss[S,K,P,Fa] f64    lenders' loss on each facility's loans per path, USD (null when Fa = 0)
//   offtaker_defaults[S,K,O] u64   paths on which the offtaker defaults by the tenor's last month (null without contracts)
// scratch: bytes_per_thread (from simulate_layout) x gridDim.x x blockDim.x, uninitialised.
// ------------------------------------------------------------------------------------------------

#include "model.cuh"

namespace engine {

// USD a month: with less than a cent due a loan has no DSCR (its ratio would overflow). Same as
// stress/engine/montecarlo.py MIN_SERVICE.
constexpr double kMinService = 0.01;
// Default month of an offtaker that never defaults (and of no offtaker, and self): contract.NEVER.
constexpr int kNever = 2147483647;

enum ConfigIndex : int {
  CFG_SCENARIOS,
  CFG_TENORS,
  CFG_LOANS,
  CFG_CHIPS,
  CFG_LAUNCHES,
  CFG_BORROWERS,
  CFG_MONTHS,
  CFG_LAG,
  CFG_PATHS,
  CFG_FIRST_PATH,
  CFG_FAN_PATHS,
  CFG_SEED_LO,
  CFG_SEED_HI,
  CFG_CHANNELS,
  CFG_CROSS_DEFAULT,
  CFG_CURE_MONTHS,
  CFG_CASH_TRAP,
  CFG_MAX_CURES,
  CFG_APPRAISAL_MONTHS,
  CFG_APPRAISAL_WINDOW,
  CFG_FACILITIES,
  CFG_OFFTAKERS,
  CFG_CONTRACTS,
  CFG_SIZE
};
enum ChannelBit : int { CH_PAYMENT = 1, CH_COVENANT = 2, CH_REFINANCING = 4, CH_EXOGENOUS = 8 };
enum ScalarIndex : int {  // reals[0..N_SCALARS)
  SC_PHI,
  SC_DEMAND_SCALE,
  SC_U_MAX,
  SC_UTIL_BETA,
  SC_UTIL_SIGMA,
  SC_REFI_LTV_MAX,
  SC_SALE_COST,
  SC_DEMAND_CORR,
  SC_DEMAND_CORR_C,
  SC_PHI_YEAR,
  SC_YEAR_SD,
  SC_PRICE_IMPACT,
  N_SCALARS
};

struct Dims {
  int S, K, L, C, N, B, T, H, lag, Fa, O;
  long long P, first_path, F;
  unsigned long long seed;
  int channels, cure_months, max_cures, appraisal_months, window;
  bool cross_default, cash_trap, contracts;

  __host__ __device__ explicit Dims(const long long* cfg)
      : S(int(cfg[CFG_SCENARIOS])), K(int(cfg[CFG_TENORS])), L(int(cfg[CFG_LOANS])), C(int(cfg[CFG_CHIPS])),
        N(int(cfg[CFG_LAUNCHES])), B(int(cfg[CFG_BORROWERS])), T(int(cfg[CFG_MONTHS])),
        H(int(cfg[CFG_MONTHS] + cfg[CFG_LAG])), lag(int(cfg[CFG_LAG])), P(cfg[CFG_PATHS]),
        first_path(cfg[CFG_FIRST_PATH]), F(cfg[CFG_FAN_PATHS]),
        seed((unsigned long long)(cfg[CFG_SEED_HI]) << 32 | (unsigned long long)(cfg[CFG_SEED_LO])),
        channels(int(cfg[CFG_CHANNELS])), cure_months(int(cfg[CFG_CURE_MONTHS])),
        max_cures(int(cfg[CFG_MAX_CURES])), appraisal_months(int(cfg[CFG_APPRAISAL_MONTHS])),
        window(int(cfg[CFG_APPRAISAL_WINDOW])), Fa(int(cfg[CFG_FACILITIES])), O(int(cfg[CFG_OFFTAKERS])),
        cross_default(cfg[CFG_CROSS_DEFAULT] != 0), cash_trap(cfg[CFG_CASH_TRAP] != 0), contracts(cfg[CFG_CONTRACTS] != 0) {}
};

// Read-only views into `reals` and `ints`, in the documented order. With null bases only the
// lengths are counted (simulate_layout).
struct Tables {
  const double* scalars;
  const double* demand_decay;
  const double *log_price0, *trend_monthly, *kappa, *sigma, *psi, *noise_scale, *util_intercept, *inverse_depth;
  const double *launch_ramp, *launch_jitter, *launch_month, *launch_log_step;
  const double *demand_a, *demand_b, *util_a, *util_b, *haircut;
  const double *price_a, *price_b;
  const double *principal, *dscr_min, *ltv_max, *copula_load, *copula_idio, *scrap, *cure_capacity, *rvg;
  const double *reserve_target, *regular_balance;
  const double *monthly_rate, *exogenous_threshold;
  const double *gpus_alive, *contract_revenue, *merchant_hours, *value_income, *value_cost;
  const double *opex_base, *opex_slope;
  const double *ap_discount, *ap_annuity, *ap_hours_u, *ap_opex, *ap_life, *ap_contract_months, *ap_share, *ap_rent;
  const double *ap_gpus, *ap_phi_pow, *ap_psi_pow;
  const double *off_sqrt_rho, *off_loading, *off_loading_c, *off_idio, *off_threshold;
  const double *ct_price, *ct_renewal_prob, *ct_renewal_factor, *ct_hours_on, *ct_merchant_on, *ct_merchant_off;
  const double *ct_base_on, *ct_slope_on, *ct_base_off, *ct_slope_off;
  const int *chip, *refinanced, *borrower, *tenor, *facility;
  const int *ct_offtaker, *ct_months, *ct_renewal_months, *off_forced;
  long long n_reals = 0, n_ints = 0;

  __host__ __device__ Tables(const Dims& d, const double* reals, const int* ints) {
    const long long S = d.S, K = d.K, L = d.L, C = d.C, N = d.N, T = d.T, H = d.H;
    auto real = [&](long long n) {
      const double* a = reals ? reals + n_reals : nullptr;
      n_reals += n;
      return a;
    };
    auto integer = [&](long long n) {
      const int* a = ints ? ints + n_ints : nullptr;
      n_ints += n;
      return a;
    };
    scalars = real(N_SCALARS);
    demand_decay = real(H);
    log_price0 = real(C), trend_monthly = real(C), kappa = real(C), sigma = real(C), psi = real(C);
    noise_scale = real(C), util_intercept = real(C), inverse_depth = real(C);
    launch_ramp = real(N), launch_jitter = real(N), launch_month = real(S * N), launch_log_step = real(S * N);
    demand_a = real(S * H), demand_b = real(S * H), util_a = real(S * H), util_b = real(S * H);
    haircut = real(S * H);
    price_a = real(S * C * H), price_b = real(S * C * H);
    principal = real(L), dscr_min = real(L), ltv_max = real(L), copula_load = real(L), copula_idio = real(L);
    scrap = real(L), cure_capacity = real(L), rvg = real(L);
    reserve_target = real(K * L), regular_balance = real(K * L * T);
    monthly_rate = real(S * L * T), exogenous_threshold = real(S * L * T);
    gpus_alive = real(L * H), contract_revenue = real(L * H), merchant_hours = real(L * H);
    value_income = real(L * H), value_cost = real(L * H);
    opex_base = real(S * L * H), opex_slope = real(S * L * H);
    const long long A = d.appraisal_months > 0 ? 1 : 0, W1 = A * (d.window + 1);
    ap_discount = real(C * W1), ap_annuity = real(C * W1), ap_hours_u = real(A * C), ap_opex = real(A * S * C * (H + 1));
    ap_life = real(A * L), ap_contract_months = real(A * L), ap_share = real(A * L), ap_rent = real(A * L);
    ap_gpus = real(A * L), ap_phi_pow = real(W1), ap_psi_pow = real(C * W1);
    const long long Q = d.contracts ? 1 : 0, O = Q * d.O;
    off_sqrt_rho = real(O), off_loading = real(O), off_loading_c = real(O), off_idio = real(O);
    off_threshold = real(S * O * H);
    ct_price = real(Q * L), ct_renewal_prob = real(Q * S * L), ct_renewal_factor = real(Q * L);
    ct_hours_on = real(Q * L * H), ct_merchant_on = real(Q * L * H), ct_merchant_off = real(Q * L * H);
    ct_base_on = real(Q * S * L * H), ct_slope_on = real(Q * S * L * H);
    ct_base_off = real(Q * S * L * H), ct_slope_off = real(Q * S * L * H);
    chip = integer(L), refinanced = integer(L), borrower = integer(L), tenor = integer(K * L), facility = integer(L);
    ct_offtaker = integer(Q * L), ct_months = integer(Q * L), ct_renewal_months = integer(Q * L);
    off_forced = integer(S * O);
  }
};

struct Outputs {
  double* loss;
  double* loan_loss;
  unsigned long long* loan_defaults;
  double* loan_lgd;
  double* defaulted_exposure;
  unsigned long long* cause_count;
  double* price_fan;
  double* ltv_fan;
  double* dscr_fan;
  short* default_month;
  signed char* default_cause;
  double* loan_equity;
  double* loan_equity_sq;
  double* loan_equity_lost;
  double* loan_equity_lost_sq;
  double* facility_loss;
  unsigned long long* offtaker_defaults;
};

// A per-thread array in the scratch: element i of thread tid at base[i n_threads + tid], so that
// neighbouring threads touch neighbouring words (coalesced).
template <typename V>
struct Column {
  V* base;
  long long stride;
  __host__ __device__ V& operator[](long long i) const { return base[i * stride]; }
};

// Carves the scratch into columns; every column's per-thread size is rounded up to 8 bytes so that
// all columns stay aligned for any number of threads. With a null base it only measures.
struct Arena {
  char* base;
  long long n_threads, tid, bytes = 0;  // bytes used per thread

  template <typename V>
  __host__ __device__ Column<V> take(long long count) {
    V* first = base ? reinterpret_cast<V*>(base + bytes * n_threads) + tid : nullptr;
    bytes += (count * (long long)sizeof(V) + 7) / 8 * 8;
    return Column<V>{first, n_threads};
  }
};

// Per-thread state of one (scenario, path); index j = k L + l for a (tenor, loan) cell.
template <typename T>
struct Scratch {
  Column<double> noise;      // [C] chip noise X_c(t)
  Column<double> launch;     // [N] jittered launch months
  Column<double> copula;     // [L] latent variable of the exogenous channel
  Column<double> path_loss;  // [K] portfolio loss, USD
  Column<T> price;           // [C] spot price, USD/GPU-h
  Column<T> cfads1, cfads2;  // [L] CFADS of the last two months, USD
  Column<T> balance, reserve, service1, service2;  // [K L] model::Cell
  Column<int> breach;                             // [K L]
  Column<int> cures;                              // [K L] equity cures used
  Column<T> capacity;                             // [K L] equity the sponsor can still inject, USD
  Column<double> equity;                          // [K L] equity injected so far, USD
  Column<int> default_month;                      // [K L] 1-based, 0 = none, REPAID_EARLY = swept to zero
  Column<T> exposure, reserve_at_default;         // [K L] USD, recorded at default
  Column<int> defaults_at;                        // [T] defaults in each month (sales due lag months later)
  Column<T> fan_weight, fan_ltv, fan_dscr;        // [K] principal-weighted sums of the month (fan paths)
  Column<T> fan_dscr_weight;                      // [K] the same weights, loans with debt service due only
  Column<T> paid_balance, paid_reserve;           // [K L] cross-default only: the month's b1, r1
  Column<int> own_cause;                          // [K L] cross-default only
  Column<int> borrower_cause;                     // [B] cross-default only: borrower's highest-priority cause
  Column<double> sold;                            // [C] fire sale: GPUs of each family sold this month (one tenor)
  Column<double> ap_sum;                          // [C (W+1)] appraisal only: cumulative expected rents S(n)
  Column<int> ap_window;                          // [C] appraisal only: months of S(n) computed (-1: chip not appraised)
  Column<double> ap_jump;                         // [W+1] appraisal only: launch jump J(t, t + h)
  Column<T> appraised;                            // [L] appraisal only: collateral of the latest appraisal, USD
  Column<int> offtaker_month;                     // [O] contracts only: month the offtaker defaults (kNever: never)
  Column<int> contract_end;                       // [L] contracts only: last month of the contract in force
  Column<double> contract_price;                  // [L] contracts only: its price, USD/GPU-h
  long long bytes_per_thread;

  __host__ __device__ Scratch(char* base, long long n_threads, long long tid, const Dims& d) {
    Arena a{base, n_threads, tid};
    const long long cells = (long long)d.K * d.L, pending = d.cross_default ? cells : 0;
    noise = a.take<double>(d.C), launch = a.take<double>(d.N), copula = a.take<double>(d.L);
    path_loss = a.take<double>(d.K);
    price = a.take<T>(d.C), cfads1 = a.take<T>(d.L), cfads2 = a.take<T>(d.L);
    balance = a.take<T>(cells), reserve = a.take<T>(cells), service1 = a.take<T>(cells), service2 = a.take<T>(cells);
    breach = a.take<int>(cells), default_month = a.take<int>(cells);
    cures = a.take<int>(cells), capacity = a.take<T>(cells), equity = a.take<double>(cells);
    exposure = a.take<T>(cells), reserve_at_default = a.take<T>(cells);
    defaults_at = a.take<int>(d.T);
    fan_weight = a.take<T>(d.K), fan_ltv = a.take<T>(d.K), fan_dscr = a.take<T>(d.K);
    fan_dscr_weight = a.take<T>(d.K);
    paid_balance = a.take<T>(pending), paid_reserve = a.take<T>(pending), own_cause = a.take<int>(pending);
    borrower_cause = a.take<int>(d.cross_default ? d.B : 0);
    sold = a.take<double>(d.C);
    const bool ap = d.appraisal_months > 0;
    ap_sum = a.take<double>(ap ? (long long)d.C * (d.window + 1) : 0), appraised = a.take<T>(ap ? d.L : 0);
    ap_window = a.take<int>(ap ? d.C : 0), ap_jump = a.take<double>(ap ? d.window + 1 : 0);
    offtaker_month = a.take<int>(d.contracts ? d.O : 0);
    contract_end = a.take<int>(d.contracts ? d.L : 0), contract_price = a.take<double>(d.contracts ? d.L : 0);
    bytes_per_thread = a.bytes;
  }
};

// One (scenario, path) from month 1 to H: montecarlo.simulate restricted to one s and one p.
template <typename T>
struct PathSim {
  const Dims& d;
  const Tables& tb;
  const Outputs& out;
  const Scratch<T>& sc;
  const int s;                     // scenario
  const long long p;               // path within the chunk
  const unsigned long long path;   // global path index (Philox counter word 0)
  const philox::Key key;
  const model::Rules<T> rules;
  const bool fan;                  // a fan path: record prices, LTV and DSCR
  double demand, demand0;          // unshocked demand D_t and D_0

  __device__ PathSim(const Dims& d_, const Tables& tb_, const Outputs& out_, const Scratch<T>& sc_, int s_,
                     long long p_)
      : d(d_), tb(tb_), out(out_), sc(sc_), s(s_), p(p_), path((unsigned long long)(d_.first_path + p_)),
        key(philox::seed_key(d_.seed)),
        rules{(d_.channels & CH_PAYMENT) != 0, (d_.channels & CH_COVENANT) != 0,
              (d_.channels & CH_REFINANCING) != 0, (d_.channels & CH_EXOGENOUS) != 0, d_.cure_months,
              T(tb_.scalars[SC_REFI_LTV_MAX]), d_.cash_trap, d_.max_cures},
        fan(p_ < d_.F), demand(0.0), demand0(0.0) {}

  __device__ long long skl(int k, int l) const { return ((long long)s * d.K + k) * d.L + l; }

  // market.first_year_factor: W = (D_12 - phi^12 D_0) / sqrt(1 - phi^24), a pre-pass over the first
  // 12 demand innovations from their Philox counters (advance_market regenerates them).
  __device__ double first_year_factor() const {
    double x = demand0;
    for (int t = 1; t <= 12; ++t)
      x = model::ar1_step(x, tb.scalars[SC_PHI], tb.scalars[SC_DEMAND_SCALE],
                          philox::normal_at(key, path, t, philox::STREAM_DEMAND, 0));
    return (x - tb.scalars[SC_PHI_YEAR] * demand0) / tb.scalars[SC_YEAR_SD];
  }

  // market.start, the copula draw of montecarlo.simulate, and waterfall.open_state.
  __device__ void start() {
    demand0 = demand = philox::normal_at(key, path, 0, philox::STREAM_DEMAND, 0);
    for (int c = 0; c < d.C; ++c) sc.noise[c] = 0.0;
    for (int n = 0; n < d.N; ++n) {
      const double u = philox::uniform_at(key, path, 0, philox::STREAM_LAUNCH, n);
      sc.launch[n] = tb.launch_month[s * d.N + n] + tb.launch_jitter[n] * (2.0 * u - 1.0);
    }
    const double z0 = philox::normal_at(key, path, 0, philox::STREAM_COPULA_SYS, 0);
    const double w = tb.scalars[SC_DEMAND_CORR] != 0.0 || d.contracts ? first_year_factor() : 0.0;
    double z = z0;
    if (tb.scalars[SC_DEMAND_CORR] != 0.0)  // wrong-way risk: Z = r W + sqrt(1 - r^2) Z0
      z = tb.scalars[SC_DEMAND_CORR] * w + tb.scalars[SC_DEMAND_CORR_C] * z0;
    if (d.contracts) start_contracts(w, z0);
    double eps[4];
    for (int l = 0; l < d.L; ++l) {
      if (l % 4 == 0) philox::normals4(key, path, 0, philox::STREAM_COPULA_IDIO, l / 4, eps);
      sc.copula[l] = tb.copula_load[l] * z + tb.copula_idio[l] * eps[l % 4];
      sc.cfads1[l] = sc.cfads2[l] = T(0);
    }
    for (int k = 0; k < d.K; ++k) {
      sc.path_loss[k] = 0.0;
      for (int l = 0; l < d.L; ++l) {
        const long long j = (long long)k * d.L + l;
        sc.balance[j] = T(tb.principal[l]);
        sc.reserve[j] = T(tb.reserve_target[j]);
        sc.service1[j] = sc.service2[j] = T(0);
        sc.breach[j] = 0;
        sc.default_month[j] = 0;
        sc.cures[j] = 0;
        sc.capacity[j] = T(tb.cure_capacity[l]);
        sc.equity[j] = 0.0;
      }
    }
    for (int i = 0; i < d.T; ++i) sc.defaults_at[i] = 0;
    if (d.appraisal_months > 0) reappraise(0);
  }

  // contract.default_months and ContractState.start: each offtaker's latent variable and default month
  // (counted per tenor into offtaker_defaults), and the tape's contracts.
  __device__ void start_contracts(double w, double z0) {
    double eta[4];
    for (int o = 0; o < d.O; ++o) {
      if (o % 4 == 0) philox::normals4(key, path, 0, philox::STREAM_OFFTAKER, o / 4, eta);
      const double y = model::offtaker_latent(tb.off_sqrt_rho[o], tb.off_loading[o], tb.off_loading_c[o],
                                              tb.off_idio[o], w, z0, eta[o % 4]);
      int month = kNever;
      const double* threshold = tb.off_threshold + ((long long)s * d.O + o) * d.H;
      for (int t = 1; t <= d.H; ++t)
        if (y <= threshold[t - 1]) {
          month = t;
          break;
        }
      const int forced = tb.off_forced[s * d.O + o];
      if (forced > 0 && forced < month) month = forced;
      sc.offtaker_month[o] = month;
      for (int k = 0; k < d.K; ++k) {
        int last = 0;  // the tenor's last month (tenors=tape: the longest loan)
        for (int l = 0; l < d.L; ++l) last = tb.tenor[k * d.L + l] > last ? tb.tenor[k * d.L + l] : last;
        if (month <= last) atomicAdd(&out.offtaker_defaults[((long long)s * d.K + k) * d.O + o], 1ull);
      }
    }
    for (int l = 0; l < d.L; ++l) sc.contract_end[l] = tb.ct_months[l], sc.contract_price[l] = tb.ct_price[l];
  }

  // ContractState.fails: the default month of loan l's offtaker (kNever: none, self, or never).
  __device__ int offtaker_fails(int l) const {
    const int o = tb.ct_offtaker[l];
    return o >= 0 && o < d.O ? sc.offtaker_month[o] : kNever;
  }

  // ContractState.renew at the end of month t: a contract whose last month is t, with its offtaker
  // alive, renews with probability renewal_prob at the month's spot price x (1 + premium).
  __device__ void renew(int t) {
    for (int l = 0; l < d.L; ++l) {
      if (sc.contract_end[l] != t || !(t < offtaker_fails(l))) continue;
      const double u = philox::uniform_at(key, path, t, philox::STREAM_RENEWAL, l);
      if (u < tb.ct_renewal_prob[(long long)s * d.L + l]) {
        sc.contract_end[l] += tb.ct_renewal_months[l];
        sc.contract_price[l] = model::renewal_price(double(sc.price[tb.chip[l]]), tb.ct_renewal_factor[l]);
      }
    }
  }

  // Months of physical life left of loan l at month t, within the appraisal window (appraisal.appraise's `left`).
  __device__ int life_left(int l, int t) const {
    return int(model::np_clip(tb.ap_life[l] - double(t), 0.0, double(d.window)));
  }

  // appraisal.expected_prices + the cumulative sums of appraisal.appraise at month t, of the chips of
  // the loans `wanted(l)` says, each up to the longest life left of those loans (appraisal.appraise's
  // `windows`; S(n) is a running sum, so a shorter window leaves the sums it computes unchanged).
  template <typename Wanted>
  __device__ void appraise_chips(int t, Wanted wanted) {
    const long long W1 = d.window + 1;
    for (int c = 0; c < d.C; ++c) sc.ap_window[c] = -1;
    for (int l = 0; l < d.L; ++l)
      if (wanted(l)) sc.ap_window[tb.chip[l]] = model::np_maximum(sc.ap_window[tb.chip[l]], life_left(l, t));
    int window = 1;
    for (int c = 0; c < d.C; ++c) {
      window = model::np_maximum(window, sc.ap_window[c]);
      if (sc.ap_window[c] >= 0) sc.ap_sum[c * W1] = 0.0;
    }
    const double a_d = t > 0 ? tb.demand_a[(long long)s * d.H + t - 1] : 1.0;
    const double b_d = t > 0 ? tb.demand_b[(long long)s * d.H + t - 1] : 0.0;
    const double dtilde = demand - (t > 0 ? tb.demand_decay[t - 1] : 1.0) * demand0;
    // J(t, t + h): launches in order, each over every month ahead (a launch under way counts from its
    // path month, one still to come from its scheduled month, or t + 1 once that has passed).
    for (int h = 1; h <= window; ++h) sc.ap_jump[h] = 0.0;
    for (int n = 0; n < d.N; ++n) {
      const double path_month = sc.launch[n];
      const double month = path_month <= double(t) ? path_month
                                                   : model::np_maximum(tb.launch_month[s * d.N + n], double(t) + 1.0);
      const double step = tb.launch_log_step[s * d.N + n], ramp = tb.launch_ramp[n];
      for (int h = 1; h <= window; ++h) sc.ap_jump[h] = sc.ap_jump[h] + step * model::launch_share(t + h, month, ramp);
    }
    for (int c = 0; c < d.C; ++c) {  // chips are independent: each chip's running sum over h
      const long long sci = ((long long)s * d.C + c) * d.H + t - 1;
      const double a_p = t > 0 ? tb.price_a[sci] : 1.0, b_p = t > 0 ? tb.price_b[sci] : 0.0;
      const double opex = tb.ap_opex[((long long)s * d.C + c) * (d.H + 1) + t];
      const double log_price0 = tb.log_price0[c], trend = tb.trend_monthly[c], kappa = tb.kappa[c];
      const double sigma = tb.sigma[c], noise = sc.noise[c], hours_u = tb.ap_hours_u[c];
      double sum = 0.0;
      for (int h = 1; h <= sc.ap_window[c]; ++h) {
        const double innovation = a_d * tb.ap_phi_pow[h] * dtilde + b_d;
        const double log_price = model::log_spot_price(log_price0, trend, t + h, kappa, innovation,
                                                       sigma * tb.ap_psi_pow[c * W1 + h], noise, sc.ap_jump[h]);
        sum = sum + model::appraisal_rent(model::spot_price(a_p, b_p, log_price), hours_u, opex, tb.ap_discount[c * W1 + h]);
        sc.ap_sum[c * W1 + h] = sum;
      }
    }
  }

  // Appraised value per alive GPU of loan l at month t from appraise_chips(t), USD. With contracts, the
  // contract in force (ContractState.months_left: none once its offtaker failed; at a `sale`, none for self).
  __device__ double loan_appraisal(int l, int t, bool sale) const {
    const long long W1 = d.window + 1;
    const int c = tb.chip[l];
    const int left = life_left(l, t);
    double signed_months = tb.ap_contract_months[l] - double(t), rent = tb.ap_rent[l];
    if (d.contracts) {
      const bool live = t < offtaker_fails(l) && !(sale && tb.ct_offtaker[l] == d.O);
      signed_months = live ? double(sc.contract_end[l] - t) : 0.0;
      rent = 730.0 * sc.contract_price[l];  // recovery.HOURS_PER_MONTH
    }
    const int months = int(model::np_maximum(model::np_minimum(signed_months, double(left)), 0.0));
    const double opex = tb.ap_opex[((long long)s * d.C + c) * (d.H + 1) + t];
    return model::appraisal_value(sc.ap_sum[c * W1 + left], sc.ap_sum[c * W1 + months], tb.ap_share[l], rent,
                                  opex, tb.ap_annuity[c * W1 + months], tb.scrap[l]);
  }

  // A new appraisal at month t: the collateral of every loan until the next one (montecarlo.simulate's
  // `appraised`). A loan with no live cell left is not appraised (its collateral is not read again).
  __device__ void reappraise(int t) {
    const auto any_live = [&](int l) {
      for (int k = 0; k < d.K; ++k)
        if (live((long long)k * d.L + l, t)) return true;
      return false;
    };
    appraise_chips(t, any_live);
    for (int l = 0; l < d.L; ++l) {
      if (!any_live(l)) continue;
      const double alive = t > 0 ? double(T(tb.gpus_alive[(long long)(t - 1) * d.L + l])) : double(T(tb.ap_gpus[l]));
      sc.appraised[l] = T(alive * loan_appraisal(l, t, false));
    }
  }

  // market.advance: AR(1) steps, then the shocked demand (returned) and spot prices of month t.
  __device__ double advance_market(int t) {
    const int i = t - 1;
    const double e = philox::normal_at(key, path, t, philox::STREAM_DEMAND, 0);
    demand = model::ar1_step(demand, tb.scalars[SC_PHI], tb.scalars[SC_DEMAND_SCALE], e);
    double eta[4];
    for (int c = 0; c < d.C; ++c) {
      if (c % 4 == 0) philox::normals4(key, path, t, philox::STREAM_PRICE, c / 4, eta);
      sc.noise[c] = model::ar1_step(sc.noise[c], tb.psi[c], tb.noise_scale[c], eta[c % 4]);
    }
    const long long si = (long long)s * d.H + i;
    const double shocked = tb.demand_a[si] * demand + tb.demand_b[si];
    const double innovation = tb.demand_a[si] * (demand - tb.demand_decay[i] * demand0) + tb.demand_b[si];
    double jump = 0.0;
    for (int n = 0; n < d.N; ++n)
      jump = jump + tb.launch_log_step[s * d.N + n] * model::launch_share(t, sc.launch[n], tb.launch_ramp[n]);
    for (int c = 0; c < d.C; ++c) {
      const double log_price = model::log_spot_price(tb.log_price0[c], tb.trend_monthly[c], t, tb.kappa[c],
                                                     innovation, tb.sigma[c], sc.noise[c], jump);
      const long long sci = ((long long)s * d.C + c) * d.H + i;
      const T price = T(model::spot_price(tb.price_a[sci], tb.price_b[sci], log_price));
      sc.price[c] = price;
      if (fan && t <= d.T) out.price_fan[(((long long)s * d.F + p) * d.C + c) * d.T + i] = double(price);
    }
    return shocked;
  }

  __device__ model::Cell<T> load(long long j) const {
    return model::Cell<T>{sc.balance[j], sc.reserve[j], sc.service1[j], sc.service2[j], sc.breach[j], sc.cures[j],
                          sc.capacity[j], T(0)};
  }
  __device__ void store(long long j, const model::Cell<T>& c) const {
    sc.balance[j] = c.balance, sc.reserve[j] = c.reserve, sc.service1[j] = c.service1, sc.service2[j] = c.service2;
    sc.breach[j] = c.breach, sc.cures[j] = c.cures, sc.capacity[j] = c.capacity;
    sc.equity[j] += double(c.injected);
  }
  // Active at the start of month t: not defaulted, not repaid early and not past maturity
  // (waterfall.LoanState.active).
  static constexpr int REPAID_EARLY = -1;
  __device__ bool live(long long j, int t) const { return sc.default_month[j] == 0 && t <= tb.tenor[j]; }

  // End of waterfall.step for a live cell with its final cause: record a default (and emit its
  // counts), or pay.
  __device__ void settle(int k, int l, int t, model::Cell<T>& c, const model::Month<T>& m, int cause) {
    const long long j = (long long)k * d.L + l;
    if (cause == model::NONE) {
      model::pay(c, m);
      if (!(c.balance > T(0))) sc.default_month[j] = REPAID_EARLY;  // the cash sweep repaid it
      return;
    }
    const model::DefaultRecord<T> rec = model::default_record(c, m, m.cause);  // own cause: see default_record
    sc.default_month[j] = t;
    sc.exposure[j] = rec.exposure;
    sc.reserve_at_default[j] = rec.reserve;
    sc.defaults_at[t - 1] += 1;
    const long long sk = (long long)s * d.K + k;
    atomicAdd(&out.loan_defaults[sk * d.L + l], 1ull);
    atomicAdd(&out.cause_count[sk * model::N_CAUSES + cause - 1], 1ull);
    atomicAdd(&out.defaulted_exposure[sk * d.T + t - 1], double(rec.exposure));
    if (out.default_month) {
      out.default_month[(sk * d.P + p) * d.L + l] = short(t);
      out.default_cause[(sk * d.P + p) * d.L + l] = (signed char)cause;
    }
  }

  // Cash flows and default rules of month t <= T for every loan and tenor (montecarlo.simulate's month
  // body and waterfall.step). `shocked` is the scenario's demand of the month.
  __device__ void loans_month(int t, double shocked) {
    const int i = t - 1;
    const long long si = (long long)s * d.H + i;
    const T demand_t = T(shocked), beta = T(tb.scalars[SC_UTIL_BETA]), sigma_u = T(tb.scalars[SC_UTIL_SIGMA]);
    const T u_max = T(tb.scalars[SC_U_MAX]);
    const T util_a = T(tb.util_a[si]), util_b = T(tb.util_b[si]);
    if (d.appraisal_months > 0 && t % d.appraisal_months == 0) reappraise(t);
    if (fan)
      for (int k = 0; k < d.K; ++k) sc.fan_weight[k] = sc.fan_ltv[k] = sc.fan_dscr[k] = sc.fan_dscr_weight[k] = T(0);
    double noise[4];
    int noise_block = -1;  // the block of 4 loans whose utilisation normals are in `noise`
    for (int l = 0; l < d.L; ++l) {
      // Cells that have defaulted or matured have no events left, take no part in cross-default and
      // no fan: skip them, and a loan with no live cell at all (counter-based random numbers need no
      // catching up).
      bool any_live = false;
      for (int k = 0; k < d.K && !any_live; ++k) any_live = live((long long)k * d.L + l, t);
      if (!any_live) continue;
      if (l / 4 != noise_block) {
        noise_block = l / 4;
        philox::normals4(key, path, t, philox::STREAM_UTILIZATION, noise_block, noise);
      }
      const int c = tb.chip[l];
      const long long li = (long long)i * d.L + l, sli = ((long long)s * d.H + i) * d.L + l;
      const long long slt = ((long long)s * d.T + i) * d.L + l;
      const T util = model::utilization<T>(T(tb.util_intercept[c]), beta, demand_t, sigma_u, T(noise[l % 4]), u_max,
                                           util_a, util_b);
      const T price = sc.price[c];
      T cf;
      if (!d.contracts) {
        cf = model::cfads<T>(T(tb.contract_revenue[li]), T(tb.opex_base[sli]), util, T(tb.merchant_hours[li]), price,
                             T(tb.opex_slope[sli]));
      } else if (model::contract_on(t, sc.contract_end[l], offtaker_fails(l))) {  // its rent, the rest at spot
        cf = model::cfads<T>(T(tb.ct_hours_on[li] * sc.contract_price[l]), T(tb.ct_base_on[sli]), util,
                             T(tb.ct_merchant_on[li]), price, T(tb.ct_slope_on[sli]));
      } else {  // no contract in force: every GPU at spot
        cf = model::cfads<T>(T(0), T(tb.ct_base_off[sli]), util, T(tb.ct_merchant_off[li]), price, T(tb.ct_slope_off[sli]));
      }
      const T collateral = d.appraisal_months > 0
          ? sc.appraised[l]
          : T(tb.gpus_alive[li]) * model::collateral_value<T>(price, T(tb.value_income[li]), T(tb.value_cost[li]),
                                                             T(tb.scrap[l]));
      const T ltv_limit = T(tb.ltv_max[l]) * collateral, refi_limit = rules.refi_ltv_max * collateral;
      const T monthly_rate = T(tb.monthly_rate[slt]);
      const bool exogenous_hit = sc.copula[l] <= tb.exogenous_threshold[slt];
      const T cf1 = sc.cfads1[l], cf2 = sc.cfads2[l];
      for (int k = 0; k < d.K; ++k) {
        const long long j = (long long)k * d.L + l;
        if (!live(j, t)) continue;
        model::Cell<T> cell = load(j);
        const T opening = cell.balance;
        const model::Month<T> m = model::waterfall_month<T>(
            cell, rules, cf, cf1, cf2, ltv_limit, refi_limit, monthly_rate, T(tb.regular_balance[((long long)k * d.T + i) * d.L + l]),
            T(tb.reserve_target[j]), T(tb.dscr_min[l]), t == tb.tenor[j], tb.refinanced[l] != 0, exogenous_hit);
        if (fan) {
          const T w = T(tb.principal[l]);
          sc.fan_weight[k] += w;
          sc.fan_ltv[k] += w * (opening / collateral);
          if (m.service >= T(kMinService)) {  // nothing (or under a cent) due: no DSCR
            sc.fan_dscr_weight[k] += w;
            sc.fan_dscr[k] += w * (cf / m.service);
          }
        }
        if (d.cross_default) {  // settled below, once every loan's own cause is known
          sc.paid_balance[j] = m.paid_balance, sc.paid_reserve[j] = m.paid_reserve, sc.own_cause[j] = m.cause;
        } else {
          settle(k, l, t, cell, m, m.cause);
        }
        store(j, cell);
      }
      sc.cfads2[l] = cf1;
      sc.cfads1[l] = cf;
    }
    if (d.cross_default) cross_default(t);
    if (fan) {
      for (int k = 0; k < d.K; ++k) {
        if (!(sc.fan_weight[k] > T(0))) continue;  // nothing live: the fan keeps its NaN
        const long long at = (((long long)s * d.K + k) * d.F + p) * d.T + i;
        out.ltv_fan[at] = double(sc.fan_ltv[k] / sc.fan_weight[k]);
        if (sc.fan_dscr_weight[k] > T(0)) out.dscr_fan[at] = double(sc.fan_dscr[k] / sc.fan_dscr_weight[k]);
      }
    }
  }

  // waterfall._cross_default: a live loan without a cause of its own takes the highest-priority
  // (lowest) cause among its borrower's loans this month; then every live cell is settled. Cells
  // that are not live have no cause (and their own_cause may be stale: loans_month skips them).
  __device__ void cross_default(int t) {
    for (int k = 0; k < d.K; ++k) {
      for (int b = 0; b < d.B; ++b) sc.borrower_cause[b] = model::NONE;
      for (int l = 0; l < d.L; ++l) {
        const long long j = (long long)k * d.L + l;
        const int own = sc.own_cause[j], b = tb.borrower[l], held = sc.borrower_cause[b];
        if (live(j, t) && own != model::NONE && (held == model::NONE || own < held)) sc.borrower_cause[b] = own;
      }
      for (int l = 0; l < d.L; ++l) {
        const long long j = (long long)k * d.L + l;
        if (!live(j, t)) continue;
        int cause = sc.own_cause[j];
        if (cause == model::NONE) cause = sc.borrower_cause[tb.borrower[l]];
        model::Cell<T> cell = load(j);
        settle(k, l, t, cell, model::Month<T>{sc.paid_balance[j], sc.paid_reserve[j], T(0), sc.own_cause[j]}, cause);
        store(j, cell);
      }
    }
  }

  // Sale of the collateral of loans that defaulted `lag` months before t (montecarlo.simulate's `sold`):
  // loss = exposure - liquidation proceeds at month t's collateral value.
  __device__ void sell(int t) {
    const int defaulted = t - d.lag;
    if (defaulted < 1 || sc.defaults_at[defaulted - 1] == 0) return;  // defaults happen in months 1..T
    const int i = t - 1;
    const T haircut = T(tb.haircut[(long long)s * d.H + i]);
    const T keep_after_sale = T(1.0 - tb.scalars[SC_SALE_COST]);
    if (d.appraisal_months > 0)  // recovery: a fresh appraisal of the sale month, of the chips sold (appraise's `sales`)
      appraise_chips(t, [&](int l) {
        for (int k = 0; k < d.K; ++k)
          if (sc.default_month[(long long)k * d.L + l] == defaulted) return true;
        return false;
      });
    const double impact = tb.scalars[SC_PRICE_IMPACT];
    for (int k = 0; k < d.K; ++k) {
      if (impact != 0.0) {  // recovery.fire_sale_keep: the GPUs of each family this tenor's sales bring to market
        for (int c = 0; c < d.C; ++c) sc.sold[c] = 0.0;
        for (int l = 0; l < d.L; ++l)
          if (sc.default_month[(long long)k * d.L + l] == defaulted) sc.sold[tb.chip[l]] += tb.gpus_alive[(long long)i * d.L + l];
      }
      for (int l = 0; l < d.L; ++l) {
        const long long li = (long long)i * d.L + l;
        const long long j = (long long)k * d.L + l;
        if (sc.default_month[j] != defaulted) continue;
        const int c = tb.chip[l];
        const T keep = impact != 0.0 ? T(1.0 - impact * model::np_minimum(1.0, sc.sold[c] * tb.inverse_depth[c])) : T(1);
        const T value = d.appraisal_months > 0 ? T(loan_appraisal(l, t, true))
                                               : model::collateral_value<T>(sc.price[tb.chip[l]], T(tb.value_income[li]),
                                                                            T(tb.value_cost[li]), T(tb.scrap[l]));
        // waterfall.step records the annual rate at default as 12.0 * monthly_rate, in T.
        const T annual_rate = T(12) * T(tb.monthly_rate[((long long)s * d.T + defaulted - 1) * d.L + l]);
        const T exposure = sc.exposure[j];
        const T proceeds = model::liquidation_proceeds<T>(T(tb.gpus_alive[li]), value, haircut, keep_after_sale, keep,
                                                          T(tb.rvg[l]), sc.reserve_at_default[j], exposure,
                                                          annual_rate, d.lag);
        const T loss = exposure - proceeds;
        sc.path_loss[k] += double(loss);
        if (out.facility_loss && tb.facility[l] >= 0)  // one thread per (scenario, path): no atomic needed
          out.facility_loss[(((long long)s * d.K + k) * d.P + p) * d.Fa + tb.facility[l]] += double(loss);
        atomicAdd(&out.loan_loss[skl(k, l)], double(loss));
        atomicAdd(&out.loan_lgd[skl(k, l)], double(loss / exposure));
      }
    }
  }

  __device__ void run() {
    start();
    for (int t = 1; t <= d.H; ++t) {
      const double shocked = advance_market(t);
      if (t <= d.T) loans_month(t, shocked);
      sell(t);
      if (d.contracts) renew(t);
    }
    for (int k = 0; k < d.K; ++k) out.loss[((long long)s * d.K + k) * d.P + p] = sc.path_loss[k];
    if (out.loan_equity)
      for (int k = 0; k < d.K; ++k)
        for (int l = 0; l < d.L; ++l) {
          const double x = sc.equity[(long long)k * d.L + l];
          atomicAdd(&out.loan_equity[skl(k, l)], x);
          atomicAdd(&out.loan_equity_sq[skl(k, l)], x * x);
          const double lost = sc.default_month[(long long)k * d.L + l] > 0 ? x : 0.0;  // injected before a default
          atomicAdd(&out.loan_equity_lost[skl(k, l)], lost);
          atomicAdd(&out.loan_equity_lost_sq[skl(k, l)], lost * lost);
        }
  }
};

template <typename T>
__device__ void simulate_paths(const long long* config, const double* reals, const int* ints, const Outputs& out,
                               char* scratch) {
  const Dims d(config);
  const Tables tb(d, reals, ints);
  const long long n_threads = (long long)gridDim.x * blockDim.x;
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const Scratch<T> sc(scratch, n_threads, tid, d);
  for (long long w = tid; w < d.S * d.P; w += n_threads) {
    PathSim<T> sim(d, tb, out, sc, int(w / d.P), w % d.P);
    sim.run();
  }
}

}  // namespace engine

// sizes[0] = length of reals, [1] = length of ints, [2] and [3] = scratch bytes per thread for
// float64 and float32. Run with one thread.
extern "C" __global__ void simulate_layout(const long long* config, long long* sizes) {
  const engine::Dims d(config);
  const engine::Tables tb(d, nullptr, nullptr);
  sizes[0] = tb.n_reals;
  sizes[1] = tb.n_ints;
  sizes[2] = engine::Scratch<double>(nullptr, 1, 0, d).bytes_per_thread;
  sizes[3] = engine::Scratch<float>(nullptr, 1, 0, d).bytes_per_thread;
}

#define SIMULATE_PATHS_ENTRY(NAME, T)                                                                               \
  extern "C" __global__ void NAME(const long long* config, const double* reals, const int* ints, double* loss,      \
                                  double* loan_loss, unsigned long long* loan_defaults, double* loan_lgd,          \
                                  double* defaulted_exposure, unsigned long long* cause_count, double* price_fan,  \
                                  double* ltv_fan, double* dscr_fan, short* default_month,                         \
                                  signed char* default_cause, double* loan_equity, double* loan_equity_sq,         \
                                  double* loan_equity_lost, double* loan_equity_lost_sq, double* facility_loss,   \
                                  unsigned long long* offtaker_defaults, char* scratch) {                          \
    const engine::Outputs out{loss,        loan_loss, loan_defaults, loan_lgd,      defaulted_exposure,            \
                              cause_count, price_fan, ltv_fan,       dscr_fan,      default_month,                 \
                              default_cause, loan_equity, loan_equity_sq, loan_equity_lost, loan_equity_lost_sq,  \
                              facility_loss, offtaker_defaults};                                                   \
    engine::simulate_paths<T>(config, reals, ints, out, scratch);                                                  \
  }

SIMULATE_PATHS_ENTRY(simulate_paths_f64, double)
SIMULATE_PATHS_ENTRY(simulate_paths_f32, float)
