"""Rambachan-Roth sensitivity: R HonestDiD's Medicaid example, R's random numbers, exact sub-problems, a peer."""

from __future__ import annotations


import numpy as np
import polars as pl
import pytest
from scipy import optimize, special, stats

from pipeline.did import sensitivity as hs
from pipeline.did.sensitivity import SensitivityInputError, honest_from_estimates, original_ci

PRE, POST = 5, 2
MBAR = [0.5, 1.0, 1.5, 2.0]
M_SD = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]

# R HonestDiD README (github asheshrambachan/HonestDiD, README.md, as printed, 3 significant digits).
README_SD_FIRST = [  # createSensitivityResults(..., Mvec = seq(0, 0.05, by = 0.01)), FLCI
    (0.0259, 0.0607), (0.0132, 0.0787), (0.00286, 0.0907),
    (-0.00714, 0.101), (-0.0171, 0.111), (-0.0271, 0.121),
]
README_RM_FIRST = [  # createSensitivityResults_relativeMagnitudes(..., Mbarvec = seq(0.5, 2, by = 0.5)), C-LF
    (0.0241, 0.0673), (0.0171, 0.0720), (0.00859, 0.0796), (-0.00107, 0.0883),
]
# The same objects at full precision, from the knitr cache committed beside that README
# (README_cache/gfm/unnamed-chunk-{4,6,7}_*.rdb at commit 99e05c7, 2024-03-28). The RM rows lie exactly on
# the candidate grid of R's `issue_grid` branch (888de5e, "Fixed grid to match Stata's improvement"),
# centred at the estimate: theta_grid="estimate".
CACHE_2024_RM_FIRST = [
    (0.024130122237794344, 0.06726330158312863), (0.017093720963044234, 0.07196297648143499),
    (0.008586907802101723, 0.0795988279137052), (-0.0010670258970860713, 0.08834728003302408),
]
CACHE_2024_RM_AVERAGE = [  # Mbarvec = seq(0, 2, by = 0.5), l_vec = c(0.5, 0.5)
    (0.04053046714881314, 0.07512256249015431), (0.03214178319537053, 0.07981560160559506),
    (0.01938431730559176, 0.09014856148539291), (0.005824264875491425, 0.1035014948083135),
    (-0.008538374094930495, 0.11724861535515924),
]
CACHE_2024_SD_FIRST = [
    (0.02594147902742559, 0.06072578637633297), (0.013197025151447349, 0.0786707425358153),
    (0.002856995951433544, 0.09071603940652409), (-0.007142576403053387, 0.10071561176101101),
    (-0.017142576402225745, 0.11071561176018338), (-0.027142576401398125, 0.12071561175935576),
]
CACHE_ORIGINAL_AVERAGE = (0.04036995251077609, 0.07528307712819136)  # constructOriginalCS, l_vec = c(.5, .5)
# The README's regression with a made-up control (set.seed(0); rnorm), its betahat and sigma as cached
# (README_cache/gfm/unnamed-chunk-8_*.rdb at 99e05c7, the control's row and column dropped) and the FLCIs printed.
CACHE_CONTROL_BETAHAT = [
    -0.00550345940206875, -0.01122778820363205, -0.0024676126204477883, -0.0016661616464780146,
    -0.0002392167160723217, 0.046573191126320905, 0.06929652113913157,
]
CACHE_CONTROL_SIGMA_DIAG = [
    7.961911625843814e-05, 7.515798352060588e-05, 5.128056197440992e-05, 4.138173887696788e-05,
    5.788266974628532e-05, 8.4278488176577e-05, 0.00010607763842677617,
]
CACHE_CONTROL_SIGMA_LAST_ROW = [
    2.6050451033468366e-05, 2.844123776676667e-05, 1.1617401205213651e-05, 4.599738363713679e-06,
    1.1712581058450754e-05, 6.24777842076134e-05, 0.00010607763842677617,
]
README_SD_CONTROL = [
    (0.0264, 0.0607), (0.0128, 0.0788), (0.00186, 0.0908),
    (-0.00814, 0.101), (-0.0181, 0.111), (-0.0281, 0.121),
]
# The cache at commit f05ddad (2023-07-21), rendered with R's released grid (+-20 se around zero), which
# R HonestDiD's master still uses: theta_grid="zero". The README printed these rows until March 2024.
CACHE_2023_RM_FIRST = [  # Mbarvec = seq(0, 2, by = 0.5)
    (0.02876563121251613, 0.06431042392097558), (0.024001896107258697, 0.06724195321651863),
    (0.017039514030343955, 0.07200568832177609), (0.008244926143714831, 0.07970095272257657),
    (-0.0009161029048571911, 0.08812909944726285),
]
CACHE_2023_RM_AVERAGE = [
    (0.0408329372843666, 0.07506841308610629), (0.03227406833393168, 0.08006108664052669),
    (0.019435764908279307, 0.09040305328896886), (0.005527602863822562, 0.10324135671462126),
    (-0.008380559180634212, 0.11714951875907803),
]


EVENT_TERMS = [f"year::{y}:D" for y in (2008, 2009, 2010, 2011, 2012, 2014, 2015)]


@pytest.fixture(scope="module")
def medicaid_frame(shared_data) -> pl.DataFrame:
    """The README's sample: the 2014 cohort against never and later expanders, 2008-2015."""
    return (
        pl.read_csv(shared_data("ehec_data.csv"))
        .filter((pl.col("year") < 2016) & (pl.col("yexp2").is_null() | (pl.col("yexp2") != 2015)))
        .with_columns(D=(pl.col("yexp2") == 2014).fill_null(False).cast(pl.Int64))
    )


def _event_study(frame: pl.DataFrame, controls: str = "") -> tuple[np.ndarray, np.ndarray]:
    pyfixest = pytest.importorskip("pyfixest")
    fit = pyfixest.feols(
        f"dins ~ i(year, D, ref=2013){controls} | stfips + year", data=frame.to_pandas(), vcov={"CRV1": "stfips"}
    )
    assert list(fit.coef().index)[:7] == EVENT_TERMS
    return fit.coef().to_numpy()[:7], np.asarray(fit._vcov)[:7, :7]


@pytest.fixture(scope="module")
def medicaid(medicaid_frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The README's event study, reference year 2013, standard errors clustered by state."""
    return _event_study(medicaid_frame)


def _bounds(frame: pl.DataFrame) -> np.ndarray:
    return frame.select("ci_low", "ci_high").to_numpy()


# --------------------------------------------------------------------------
# The published Medicaid example
# --------------------------------------------------------------------------


def test_event_study_matches_r_inputs(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    """The README prints neither betahat nor sigma; R's cached original CI for the average pins both post rows."""
    b, v = medicaid
    low, high = original_ci(b, v, num_pre=PRE, num_post=POST, target="average")
    np.testing.assert_allclose([low, high], CACHE_ORIGINAL_AVERAGE, atol=1e-12)
    np.testing.assert_allclose(b[5], 0.046447, atol=5e-7)  # fixest's printed coefficient for 2014


def test_event_study_with_control_matches_r_to_the_last_digit(medicaid_frame: pl.DataFrame) -> None:
    """The README's second regression adds rnorm draws after set.seed(0); R's cache holds its betahat and sigma."""
    frame = medicaid_frame.with_columns(control=pl.Series(hs._r_rnorm(medicaid_frame.height, 0)))
    b, v = _event_study(frame, " + control")
    np.testing.assert_allclose(b, CACHE_CONTROL_BETAHAT, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(np.diag(v), CACHE_CONTROL_SIGMA_DIAG, rtol=1e-11)
    np.testing.assert_allclose(v[-1], CACHE_CONTROL_SIGMA_LAST_ROW, rtol=1e-11)
    got = _bounds(honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="smoothness",
                                        values=M_SD, target="first"))
    np.testing.assert_allclose(got, README_SD_CONTROL, atol=5e-4)


def test_smoothness_reproduces_readme(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    b, v = medicaid
    got = _bounds(honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="smoothness",
                                        values=M_SD, target="first"))
    np.testing.assert_allclose(got, README_SD_FIRST, atol=5e-4)
    # R draws a million normals for the folded-normal quantile; this module computes it exactly
    np.testing.assert_allclose(got, CACHE_2024_SD_FIRST, atol=5e-5)


def test_relative_magnitudes_reproduce_readme(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    b, v = medicaid
    got = _bounds(honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="relative_magnitudes",
                                        values=MBAR, target="first", theta_grid="estimate"))
    np.testing.assert_allclose(got, README_RM_FIRST, atol=5e-4)
    np.testing.assert_allclose(got, CACHE_2024_RM_FIRST, atol=1e-9)


def test_relative_magnitudes_average_reproduce_r(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    b, v = medicaid
    got = _bounds(honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="relative_magnitudes",
                                        values=[0.0, *MBAR], theta_grid="estimate"))
    np.testing.assert_allclose(got, CACHE_2024_RM_AVERAGE, atol=1e-9)


@pytest.mark.parametrize(("target", "expected"), [("first", CACHE_2023_RM_FIRST), ("average", CACHE_2023_RM_AVERAGE)])
def test_relative_magnitudes_on_the_released_grid(
    medicaid: tuple[np.ndarray, np.ndarray], target: str, expected: list[tuple[float, float]]
) -> None:
    b, v = medicaid
    got = _bounds(honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="relative_magnitudes",
                                        values=[0.0, *MBAR], target=target))
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_smoothness_agrees_with_diff_diff(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    """diff-diff's FLCI (an SLSQP search over h) is the same interval; its RM interval is not ARP, so no peer there."""
    honest_did = pytest.importorskip("diff_diff.honest_did")
    b, v = medicaid
    for l_vec in (np.array([1.0, 0.0]), np.array([0.5, 0.5])):
        for m in (0.0, 0.02, 0.05):
            theirs = honest_did._compute_optimal_flci(b[:PRE], b[PRE:], v, l_vec, PRE, POST, m)
            ours = honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="smoothness",
                                         values=[m], target=l_vec).row(0)[1:]
            np.testing.assert_allclose(ours, theirs, atol=2e-6)


# --------------------------------------------------------------------------
# The pieces, against independent computations
# --------------------------------------------------------------------------


def test_r_normals() -> None:
    """set.seed(0); rnorm(5) in R 3.6+ (Mersenne-Twister, Inversion)."""
    np.testing.assert_allclose(
        hs._r_rnorm(5, 0), [1.262954285, -0.326233361, 1.329799263, 1.272429321, 0.414641434], atol=1e-9
    )


def test_dual_vertices_solve_the_lp() -> None:
    """max over the dual vertices equals min{eta: y - X delta <= eta sd} solved by HiGHS, duals included."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        m, k = 6, 2
        x = rng.normal(size=(m, k))
        sd = rng.uniform(0.5, 2.0, size=m)
        y = rng.normal(size=m)
        lam = hs._dual_vertices(sd, x)
        res = optimize.linprog(
            np.r_[1.0, np.zeros(k)], A_ub=-np.column_stack([sd, x]), b_ub=-y,
            bounds=[(None, None)] * (k + 1), method="highs",
        )
        if res.status == 3:  # unbounded primal: empty dual
            assert lam.shape[0] == 0
            continue
        assert res.status == 0
        values = lam @ y
        np.testing.assert_allclose(values.max(), res.fun, atol=1e-9)
        np.testing.assert_allclose(lam[np.argmax(values)], -res.ineqlin.marginals, atol=1e-7)


def test_truncated_normal_quantile() -> None:
    lo = np.array([-np.inf, -1.0, 0.5, 8.0, -12.0, 30.0])
    hi = np.array([np.inf, 2.0, 3.0, 9.0, -11.0, np.inf])
    for p in (0.05, 0.5, 0.95):
        got = hs._truncnorm_ppf(p, lo, hi)
        finite = np.abs(lo) < 10
        np.testing.assert_allclose(got[finite], stats.truncnorm.ppf(p, lo[finite], hi[finite]), rtol=1e-10)
        assert np.all((got >= lo) & (got <= hi))
        # in the far tail, where the plain normal CDF is 1 to double precision: P(Z > x | Z > 30) = 1 - p
        tail = special.log_ndtr(-got[5]) - special.log_ndtr(-30.0)
        np.testing.assert_allclose(tail, np.log1p(-p), rtol=1e-9)


def test_folded_normal_quantile() -> None:
    for mu in (0.0, 0.7, 3.0):
        q = hs._folded_normal_quantile(0.95, mu)
        np.testing.assert_allclose(stats.norm.cdf(q - mu) - stats.norm.cdf(-q - mu), 0.95, atol=1e-12)
    np.testing.assert_allclose(hs._folded_normal_quantile(0.95, 0.0), stats.norm.ppf(0.975), atol=1e-12)


def test_flci_frontier_is_the_minimum_half_length(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    """No affine estimator with the same post weights beats the chosen one (random and local search)."""
    b, v = medicaid
    problem = hs._validate(b, v, PRE, POST, "first", 0.05)
    frontier = hs._FlciFrontier.build(problem)
    for m in (0.005, 0.02):
        _, half = frontier.optimum(m, 0.05)

        def half_length(u: np.ndarray, m: float = m) -> float:
            sd, bias = frontier._at(u)
            return sd * hs._folded_normal_quantile(0.95, m * bias / sd)

        rng = np.random.default_rng(0)
        draws = rng.normal(scale=0.5, size=(300, PRE - 1))
        assert min(half_length(u) for u in draws) >= half - 1e-12
        local = optimize.minimize(half_length, np.zeros(PRE - 1), method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
        assert local.fun >= half - 1e-9


def test_smoothness_zero_is_the_best_unbiased_linear_extrapolation() -> None:
    """M = 0 makes delta linear through the reference period; the FLCI is then the least-variance unbiased one."""
    sigma = np.array([[1.0, 0.3, 0.1], [0.3, 1.2, 0.2], [0.1, 0.2, 0.9]]) * 1e-4
    b = np.array([-0.02, -0.01, 0.05])
    low, high = honest_from_estimates(b, sigma, num_pre=2, num_post=1, method="smoothness",
                                      values=[0.0], target="first").row(0)[1:]

    def weights(w: float) -> np.ndarray:
        return np.array([w, 1.0 - 2.0 * w, 1.0])  # v'(-2, -1, 1) = 0: unbiased for every linear trend

    res = optimize.minimize_scalar(lambda w: weights(w) @ sigma @ weights(w), bounds=(-5, 5), method="bounded",
                                   options={"xatol": 1e-12})
    centre, sd = float(weights(res.x) @ b), float(np.sqrt(res.fun))
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose([low, high], [centre - z * sd, centre + z * sd], atol=1e-9)


def test_relative_magnitudes_one_post_period_and_monotone_in_mbar() -> None:
    rng = np.random.default_rng(7)
    root = rng.normal(size=(4, 4)) * 0.01
    sigma = root @ root.T + np.eye(4) * 1e-5
    b = np.array([0.004, -0.002, 0.001, 0.03])
    frame = honest_from_estimates(b, sigma, num_pre=3, num_post=1, method="relative_magnitudes",
                                  values=[0.0, 1.0, 2.0], target="first", grid_points=400)
    widths = (frame["ci_high"] - frame["ci_low"]).to_numpy()
    assert np.all(np.diff(widths) >= -1e-12)
    low, high = original_ci(b, sigma, num_pre=3, num_post=1, target="first")
    assert frame["ci_low"][2] < low and frame["ci_high"][2] > high


def test_validation_names_what_was_expected() -> None:
    b, v = np.zeros(3), np.eye(3)
    with pytest.raises(SensitivityInputError, match="expected 3 = num_pre"):
        honest_from_estimates(np.zeros(4), v, num_pre=2, num_post=1, method="smoothness", values=[0.0])
    with pytest.raises(SensitivityInputError, match="method"):
        honest_from_estimates(b, v, num_pre=2, num_post=1, method="sd", values=[0.0])  # type: ignore[arg-type]
    with pytest.raises(SensitivityInputError, match="non-negative"):
        honest_from_estimates(b, v, num_pre=2, num_post=1, method="smoothness", values=[-1.0])
    with pytest.raises(SensitivityInputError, match="target"):
        honest_from_estimates(b, v, num_pre=2, num_post=1, method="smoothness", values=[0.0],
                              target=np.array([1.0, 2.0]))
    with pytest.raises(SensitivityInputError, match="symmetric"):
        original_ci(b, np.triu(np.ones((3, 3))), num_pre=2, num_post=1)


def test_primal_and_dual_truncations_agree() -> None:
    """ARP's primal truncation (binding moments) equals the exact range over which the dual vertex stays optimal."""
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(60):
        m, k = 7, 2
        root = rng.normal(size=(m, m))
        sigma = root @ root.T / m + 0.1 * np.eye(m)
        sd, x = np.sqrt(np.diag(sigma)), rng.normal(size=(m, k))
        polytope = hs._DualPolytope.build(sd, x)
        if polytope.empty:
            continue
        ys = rng.multivariate_normal(np.zeros(m), sigma, size=4).T
        _, lam = polytope.maximum(ys)
        for j in range(ys.shape[1]):
            gamma = lam[j]
            binding = gamma > hs._TOL_LAMBDA
            if binding.sum() != k + 1:
                continue
            var_b = float(gamma @ sigma @ gamma)
            primal = hs._truncation_primal(gamma, binding, x, sd, sigma, ys[:, [j]], var_b)
            dual = polytope.truncation(gamma, sigma, ys[:, [j]], var_b)
            np.testing.assert_allclose(np.r_[primal], np.r_[dual], rtol=1e-8, atol=1e-10)
            checked += 1
    assert checked > 50


def test_vertices_found_by_highs_agree_with_enumeration(
    medicaid: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path for many post-periods (vertices from HiGHS as needed) gives R's numbers too."""
    b, v = medicaid
    monkeypatch.setattr(hs, "_MAX_VERTEX_SUBSETS", 0)
    got = _bounds(honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="relative_magnitudes",
                                        values=[0.5, 2.0], theta_grid="estimate"))
    np.testing.assert_allclose(got, np.array(CACHE_2024_RM_AVERAGE)[[1, 4]], atol=1e-9)


def test_open_interval_warns(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    b, v = medicaid
    with pytest.warns(hs.OpenIntervalWarning, match="end of the grid"):
        honest_from_estimates(b, v, num_pre=PRE, num_post=POST, method="relative_magnitudes", values=[8.0],
                              grid_points=100)


def _r_no_nuisance_interval(b: np.ndarray, sigma: np.ndarray, num_pre: int, mbar: float) -> tuple[float, float]:
    """R's path for one post-period written out as R has it (``.testInIdentifiedSet_LF_Hybrid``), point by point."""
    alpha, kappa = 0.05, 0.005
    alpha_tilde = (alpha - kappa) / (1 - kappa)
    sd_theta = np.sqrt(sigma[num_pre, num_pre])
    grid = np.linspace(-20 * sd_theta, 20 * sd_theta, 1000)
    accept = np.zeros(grid.size, dtype=bool)
    for s in range(-(num_pre - 1), 1):
        for positive in (True, False):
            a = hs._rm_constraints(num_pre, 1, mbar, s, positive)
            sigma_a = a @ sigma @ a.T
            sd_a = np.sqrt(np.diag(sigma_a))
            draws = hs._r_rmvnorm(1000, sigma_a, 0) / sd_a
            lf_cv = np.quantile(draws.max(axis=1), 1 - kappa)
            a_tilde = a / sd_a[:, None]
            for g, theta in enumerate(grid):
                y = b - np.eye(b.size)[num_pre] * theta
                moments = a_tilde @ y
                i = int(np.argmax(moments))
                if moments[i] > lf_cv:
                    continue
                gamma = a_tilde[i]
                a_bar = a_tilde - a_tilde[i]
                var = gamma @ sigma @ gamma
                c = sigma @ gamma / var
                z = y - c * (gamma @ y)
                ac = a_bar @ c
                with np.errstate(divide="ignore", invalid="ignore"):
                    objective = -(a_bar @ z) / ac
                vlo = objective[ac < 0].max() if np.any(ac < 0) else -np.inf
                vup = objective[ac > 0].min() if np.any(ac > 0) else np.inf
                sd_bar = np.sqrt(var)
                cv = max(0.0, sd_bar * stats.truncnorm.ppf(1 - alpha_tilde, vlo / sd_bar, vup / sd_bar))
                accept[g] |= not moments[i] > cv
    return float(grid[accept].min()), float(grid[accept].max())


def test_one_post_period_follows_r_no_nuisance_path(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    """With one post-period R tests without nuisance parameters; written out literally it gives the same interval."""
    b, v = medicaid[0][:6], medicaid[1][:6, :6]
    for mbar in (0.5, 1.5):
        ours = honest_from_estimates(b, v, num_pre=PRE, num_post=1, method="relative_magnitudes",
                                     values=[mbar], target="first").row(0)[1:]
        np.testing.assert_allclose(ours, _r_no_nuisance_interval(b, v, PRE, mbar), atol=1e-12)


def test_smoothness_gap_to_r_is_r_simulated_quantile(medicaid: tuple[np.ndarray, np.ndarray]) -> None:
    """R's folded-normal quantile is the 95th percentile of |z + mu| over its own million draws (set.seed(0)).

    Replaying those draws at this module's estimator gives R's cached half-lengths; the 2e-5 left
    between the intervals is R's Monte Carlo error, not a different estimator.
    """
    b, v = medicaid
    frontier = hs._FlciFrontier.build(hs._validate(b, v, PRE, POST, "first", 0.05))
    draws = hs._r_rnorm(10**6, 0)
    for m, (low, high) in zip(M_SD[2:], CACHE_2024_SD_FIRST[2:]):
        weights, _ = frontier.optimum(m, 0.05)
        u = np.linalg.lstsq(frontier.to_weights, weights[:PRE] - frontier.offset, rcond=None)[0]
        sd, bias = frontier._at(u)
        r_half = sd * np.quantile(np.abs(draws + m * bias / sd), 0.95)
        np.testing.assert_allclose(r_half, (high - low) / 2, atol=1e-7)
        np.testing.assert_allclose(weights @ b, (high + low) / 2, atol=1e-8)
