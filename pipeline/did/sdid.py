r"""Synthetic difference in differences (Arkhangelsky et al. 2021) for block treatment.

The input is a balanced unit x period panel (for the pilot: municipality x month
cohort means) in which the treated units share one adoption period and stay
treated to the end of the window. The estimator follows R's ``synthdid`` and
``diff_diff.SyntheticDiD`` (3.13) choice by choice, so that their point
estimates agree:

* the outcome is centred and scaled by the mean and standard deviation of the
  controls' pre-period outcomes (a no-op for the estimate, kept for precision);
* noise level :math:`\sigma` = standard deviation of the controls' pre-period
  first differences; :math:`\zeta_\omega = (N_1 T_1)^{1/4}\sigma`,
  :math:`\zeta_\lambda = 10^{-6}\sigma`;
* unit and time weights by Frank-Wolfe on the simplex with an intercept: 100
  steps, weights at or below a quarter of the largest set to zero, then up to
  10 000 steps from there, stopping when the objective falls by less than
  :math:`(10^{-5}\sigma)^2`;
* placebo variance (Algorithm 4): re-assign the treatment to N_1 randomly chosen
  controls, re-estimate the weights (warm-started from the fitted ones) and the
  effect, and take :math:`\sqrt{(r-1)/r}` times the standard deviation of the
  r placebo effects. The interval is estimate +- z standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from scipy import special

if TYPE_CHECKING:
    from pipeline.did.panel import Frame

_FIRST_PASS_STEPS = 100
_MAX_STEPS = 10_000


@dataclass(frozen=True)
class SdidResult:
    """SDID estimate, its placebo standard error and interval, and the fitted weights."""

    estimate: float
    std_error: float
    t_stat: float
    p_value: float
    ci_low: float
    ci_high: float
    unit_weights: np.ndarray
    time_weights: np.ndarray
    control_units: tuple
    pre_periods: tuple
    placebo_estimates: np.ndarray
    zeta_omega: float
    zeta_lambda: float
    noise_level: float
    n_units: int
    n_treated_units: int
    n_periods: int
    n_post_periods: int
    alpha: float = 0.05

    estimator = "sdid"

    @property
    def n_placebo(self) -> int:
        """Number of placebo re-assignments that entered the standard error."""
        return int(self.placebo_estimates.size)

    def weights_frame(self) -> pl.DataFrame:
        """Unit weights of the controls and time weights of the pre periods, long: kind, key, weight."""
        keys = [str(u) for u in self.control_units] + [str(t) for t in self.pre_periods]
        kinds = ["unit"] * len(self.control_units) + ["time"] * len(self.pre_periods)
        w = np.concatenate([self.unit_weights, self.time_weights])
        return pl.DataFrame({"kind": kinds, "key": keys, "weight": w.tolist()})

    def tidy(self) -> pl.DataFrame:
        """One row with the estimate, its placebo inference and the panel's dimensions."""
        row = {
            "estimator": self.estimator,
            "estimate": self.estimate,
            "std_error": self.std_error,
            "t_stat": self.t_stat,
            "p_value": self.p_value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_units": self.n_units,
            "n_treated_units": self.n_treated_units,
            "n_periods": self.n_periods,
            "n_post_periods": self.n_post_periods,
            "n_placebo": self.n_placebo,
        }
        ints = ("n_units", "n_treated_units", "n_periods", "n_post_periods", "n_placebo")
        schema = {k: pl.Int64() if k in ints else pl.String() if k == "estimator" else pl.Float64() for k in row}
        return pl.DataFrame([row], schema=schema)


def sdid(
    panel: Frame,
    *,
    unit: str,
    time: str,
    outcome: str,
    treatment: str,
    replications: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> SdidResult:
    r"""Synthetic DiD on a balanced long panel with block treatment.

    .. math::

        \hat\tau = \Big(\bar Y_{tr,post} - \sum_t \hat\lambda_t Y_{tr,t}\Big)
                 - \sum_j \hat\omega_j\Big(\bar Y_{j,post} - \sum_t \hat\lambda_t Y_{j,t}\Big)

    ``treatment`` is the 0/1 treatment of the unit in the period: the treated
    units (any 1) must be treated in exactly the same periods (any unit's 1s),
    and those must follow every untreated period. Units and periods are sorted;
    ``seed`` drives the placebo re-assignments.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(1)
    >>> Y = rng.normal(size=(8, 6)) + np.arange(6)
    >>> Y[6:, 4:] += 2.0
    >>> df = pl.DataFrame({"i": np.repeat(np.arange(8), 6), "t": np.tile(np.arange(6), 8),
    ...                    "y": Y.ravel(), "d": [int(i >= 6 and t >= 4) for i in range(8) for t in range(6)]})
    >>> res = sdid(df, unit="i", time="t", outcome="y", treatment="d", replications=50)
    >>> res.tidy()["estimator"].item(), res.n_treated_units
    ('sdid', 2)
    """
    Y, n_treated, n_post, control_units, pre_periods = block_matrix(
        panel, unit=unit, time=time, outcome=outcome, treatment=treatment)
    return sdid_matrix(
        Y, n_treated=n_treated, n_post=n_post, replications=replications, seed=seed, alpha=alpha,
        control_units=control_units, pre_periods=pre_periods,
    )


def block_matrix(panel: Frame, *, unit: str, time: str, outcome: str,
                 treatment: str) -> tuple[np.ndarray, int, int, tuple, tuple]:
    """The units x periods outcome matrix of a block design, controls then treated, pre then post periods.

    Returns (Y, n_treated, n_post, control units, pre periods); raises unless the
    panel is balanced and its treatment is one block.
    """
    from pipeline.did.panel import prepare

    df = prepare(panel, [unit, time, outcome, treatment])
    units = np.sort(df[unit].unique().to_numpy())
    periods = np.sort(df[time].unique().to_numpy())
    if df.height != units.size * periods.size or df.select(pl.struct(unit, time).is_duplicated().any()).item():
        raise ValueError(
            f"sdid: expected a balanced panel ({units.size} units x {periods.size} periods = "
            f"{units.size * periods.size} rows, one per unit and period), found {df.height} rows"
        )
    wide = df.sort(unit, time)
    Y = wide[outcome].to_numpy().astype(float).reshape(units.size, periods.size)
    D = wide[treatment].to_numpy().astype(float).reshape(units.size, periods.size)
    treated, post = _block(D, units, periods)
    order = np.concatenate([np.flatnonzero(~treated), np.flatnonzero(treated)])
    cols = np.concatenate([np.flatnonzero(~post), np.flatnonzero(post)])
    return (Y[np.ix_(order, cols)], int(treated.sum()), int(post.sum()),
            tuple(units[~treated].tolist()), tuple(periods[~post].tolist()))


def _block(D: np.ndarray, units: np.ndarray, periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Treated-unit and post-period masks of a block design; raise if D is not one."""
    if not np.isin(D, (0.0, 1.0)).all():
        raise ValueError("sdid: expected a 0/1 treatment")
    treated, post = D.any(axis=1), D.any(axis=0)
    if not treated.any() or treated.all():
        raise ValueError(
            f"sdid: expected treated and control units, found {int(treated.sum())} treated of {treated.size}"
        )
    expected = np.outer(treated, post)
    bad = np.argwhere(expected != (D == 1.0))
    if bad.size:
        i, t = bad[0]
        raise ValueError(
            f"sdid: expected block treatment (every treated unit treated in every post period and no other), "
            f"found unit {units[i]!r} period {periods[t]!r} with treatment {int(D[i, t])}"
        )
    first_post = int(np.argmax(post))
    if not post[first_post:].all() or first_post < 2:
        raise ValueError(
            "sdid: expected at least two untreated periods followed by the treated periods, "
            f"found treated periods {periods[post].tolist()}"
        )
    return treated, post


def sdid_matrix(
    Y: np.ndarray,
    *,
    n_treated: int,
    n_post: int,
    replications: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    control_units: tuple | None = None,
    pre_periods: tuple | None = None,
) -> SdidResult:
    """SDID on a units x periods matrix whose last ``n_treated`` rows are treated in the last ``n_post`` columns."""
    Y = np.asarray(Y, dtype=float)
    N, T = Y.shape
    n_co, n_pre = N - n_treated, T - n_post
    if n_treated < 1 or n_co < 2 or n_post < 1 or n_pre < 2:
        raise ValueError(
            f"sdid: expected >= 1 treated and >= 2 control units, >= 2 pre and >= 1 post periods, "
            f"found {n_treated}, {n_co}, {n_pre}, {n_post}"
        )
    if not np.all(np.isfinite(Y)):
        raise ValueError("sdid: expected finite outcomes, found NaN or inf")
    if replications < 2:
        raise ValueError(f"replications: expected >= 2, found {replications}")
    shift = float(Y[:n_co, :n_pre].mean())
    raw = float(Y[:n_co, :n_pre].std())
    scale = raw if np.isfinite(raw) and raw > 1e-12 * max(abs(shift), 1.0) else 1.0
    Yn = (Y - shift) / scale
    co_pre, co_post = Yn[:n_co, :n_pre].T, Yn[:n_co, n_pre:].T
    tr_pre, tr_post = Yn[n_co:, :n_pre].mean(axis=0), Yn[n_co:, n_pre:].mean(axis=0)

    noise = _noise_level(co_pre)
    zeta_omega, zeta_lambda = (n_treated * n_post) ** 0.25 * noise, 1e-6 * noise
    tol = 1e-5 * noise if noise > 0 else 1e-5
    omega = _unit_weights(co_pre[None], tr_pre[None], zeta_omega, tol, None)[0]
    lam = _time_weights(co_pre[None], co_post[None], zeta_lambda, tol, None)[0]
    tau = float(_estimate(co_pre[None], co_post[None], tr_pre[None], tr_post[None], omega[None], lam[None])[0])

    placebo = _placebo(co_pre, co_post, n_treated, zeta_omega, zeta_lambda, tol, omega, lam, replications, seed)
    r = placebo.size
    se = float(np.sqrt((r - 1) / r) * placebo.std(ddof=1)) * scale
    est = tau * scale
    z = float(special.ndtri(1 - alpha / 2))
    t_stat = est / se if se > 0 else float("nan")
    p = max(float(np.mean(np.abs(placebo) >= abs(tau))), 1.0 / (r + 1))
    return SdidResult(
        estimate=est, std_error=se, t_stat=t_stat, p_value=p, ci_low=est - z * se, ci_high=est + z * se,
        unit_weights=omega, time_weights=lam,
        control_units=control_units if control_units is not None else tuple(range(n_co)),
        pre_periods=pre_periods if pre_periods is not None else tuple(range(n_pre)),
        placebo_estimates=placebo * scale, zeta_omega=zeta_omega * scale, zeta_lambda=zeta_lambda * scale,
        noise_level=noise * scale, n_units=N, n_treated_units=n_treated, n_periods=T, n_post_periods=n_post,
        alpha=alpha,
    )


def _noise_level(co_pre: np.ndarray) -> float:
    """Standard deviation (ddof 1) of the controls' period-to-period changes before treatment."""
    fd = np.diff(co_pre, axis=0)
    return float(fd.std(ddof=1)) if fd.size > 1 else 0.0


def _frank_wolfe(Yc: np.ndarray, zeta: float, init: np.ndarray, tol: float, max_steps: int) -> np.ndarray:
    r"""Frank-Wolfe on the simplex for :math:`\min_x \zeta^2\|x\|^2 + \frac1N\|A x - b\|^2`, R problems at once.

    ``Yc`` is (R, N, K + 1): for each problem the columns of A and then b,
    already centred column by column (the intercept). Exact line search; a
    problem stops when its objective falls by less than ``tol**2`` or after
    ``max_steps`` steps, the others go on.

    The problems are small and the steps many, so numpy's per-call overhead
    sets the pace and a step makes few calls. With :math:`s = \sqrt N\zeta`
    the objective is :math:`\|u\|^2/N` for :math:`u = (s x, A x - b)`; the
    state is :math:`(x, u)`, linear in x, so the state less that of vertex i,
    :math:`(e_i, s e_i, A_i - b)`, is minus the direction :math:`(d, s d, Ad)`
    and one table row per vertex gives the whole step. The half gradient is
    :math:`(sI; A)^\top u` (the residual is kept, not recomputed from
    :math:`A^\top A`, whose cancellation costs digits on near-collinear
    columns), and a step t along d lowers the objective by
    :math:`t(-2g^\top d - t\|(sd, Ad)\|^2)/N`: the stopping rule compares that
    decrease, computed directly rather than as a difference of objectives.
    """
    R, N, K1 = Yc.shape
    K = K1 - 1
    A, b = Yc[:, :, :-1], Yc[:, :, -1:]
    s = np.sqrt(N) * zeta
    eye = np.broadcast_to(np.eye(K), (R, K, K))
    lift = np.concatenate([s * eye, A], axis=1)
    out = np.array(init, dtype=float)
    z = np.concatenate([out, s * out, (A @ out[:, :, None] - b)[:, :, 0]], axis=1)
    vertices = np.concatenate([eye, s * eye, (A - b).transpose(0, 2, 1)], axis=2).reshape(R * K, -1)
    small = N * tol**2
    idx = np.arange(R)
    base = idx * K
    for n_step in range(max_steps):
        g = (z[:, None, K:] @ lift)[:, 0, :]
        flat = g.argmin(axis=1)
        flat += base
        back = vertices.take(flat, axis=0)
        np.subtract(z, back, out=back)  # -(d, s d, A d)
        minus_d = back[:, :K]
        slope = np.vecdot(g, minus_d)  # -g'd >= 0
        curve = np.vecdot(back[:, K:], back[:, K:])  # d'(A'A + N zeta^2 I)d
        move = minus_d.take(flat) < -1e-8
        move &= curve > 0
        if np.count_nonzero(move) == move.size:
            step = np.minimum(np.maximum(slope / curve, 0.0), 1.0)
        else:
            move = (np.abs(minus_d).max(axis=1) > 1e-8) & (curve > 0)
            step = np.where(move, np.clip(slope / np.where(move, curve, 1.0), 0.0, 1.0), 0.0)
        back *= step[:, None]
        z -= back
        fall = slope + slope  # N times the objective's decrease
        fall -= step * curve
        fall *= step
        done = fall < small
        if n_step and np.count_nonzero(done):
            out[idx[done]] = z[done, :K]
            keep = ~done
            if not keep.any():
                return out
            idx, z, lift = idx[keep], z[keep], lift[keep]
            vertices = vertices.reshape(-1, K, vertices.shape[1])[keep].reshape(-1, vertices.shape[1])
            base = np.arange(idx.size) * K
    out[idx] = z[:, :K]
    return out


def _sparsify(x: np.ndarray) -> np.ndarray:
    """Row by row: zero the weights at or below a quarter of the largest and renormalise."""
    top = x.max(axis=1, keepdims=True)
    x = np.where(x <= top / 4, 0.0, x)
    return np.where(top > 0, x / np.where(top > 0, x.sum(axis=1, keepdims=True), 1.0), 1.0 / x.shape[1])


def _two_pass(Y: np.ndarray, zeta: float, tol: float, init: np.ndarray | None) -> np.ndarray:
    """Centre each problem's columns, run 100 Frank-Wolfe steps, sparsify, then run to convergence."""
    Yc = Y - Y.mean(axis=1, keepdims=True)
    K = Y.shape[2] - 1
    x0 = np.full((Y.shape[0], K), 1.0 / K) if init is None else init
    x = _sparsify(_frank_wolfe(Yc, zeta, x0, tol, _FIRST_PASS_STEPS))
    return _frank_wolfe(Yc, zeta, x, tol, _MAX_STEPS)


def _unit_weights(
    co_pre: np.ndarray, tr_pre: np.ndarray, zeta: float, tol: float, init: np.ndarray | None
) -> np.ndarray:
    """Control weights matching the treated pre-period path up to a constant (periods are the rows).

    ``co_pre`` is (R, T0, N0) and ``tr_pre`` (R, T0): R problems at once.
    """
    return _two_pass(np.concatenate([co_pre, tr_pre[:, :, None]], axis=2), zeta, tol, init)


def _time_weights(
    co_pre: np.ndarray, co_post: np.ndarray, zeta: float, tol: float, init: np.ndarray | None
) -> np.ndarray:
    """Pre-period weights matching each control's post-period mean up to a constant (controls are the rows).

    ``co_pre`` is (R, T0, N0) and ``co_post`` (R, T1, N0): R problems at once.
    """
    Y = np.concatenate([co_pre.transpose(0, 2, 1), co_post.mean(axis=1)[:, :, None]], axis=2)
    return _two_pass(Y, zeta, tol, init)


def _estimate(co_pre: np.ndarray, co_post: np.ndarray, tr_pre: np.ndarray, tr_post: np.ndarray,
              omega: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Weighted double difference, per problem: treated minus synthetic control, post mean minus weighted pre."""
    treated = tr_post.mean(axis=1) - np.einsum("rt,rt->r", lam, tr_pre)
    control_dd = co_post.mean(axis=1) - np.einsum("rt,rtn->rn", lam, co_pre)
    return treated - np.einsum("rn,rn->r", omega, control_dd)


def _placebo(co_pre: np.ndarray, co_post: np.ndarray, n_treated: int, zeta_omega: float, zeta_lambda: float,
             tol: float, omega: np.ndarray, lam: np.ndarray, replications: int, seed: int) -> np.ndarray:
    """Placebo effects: the last ``n_treated`` of a random permutation of the controls play the treated.

    The weights are re-estimated with the fit's regularisation, warm-started
    from the fitted weights (the unit weights restricted to the placebo
    controls and renormalised), all replications at once.
    """
    n_co = co_pre.shape[1]
    n_pc = n_co - n_treated
    if n_pc < 2:
        raise ValueError(f"sdid placebo: expected at least two more controls ({n_co}) than treated units ({n_treated})")
    rng = np.random.default_rng(seed)
    perm = np.stack([rng.permutation(n_co) for _ in range(replications)])
    pc, pt = perm[:, :n_pc], perm[:, n_pc:]
    pre_c, post_c = co_pre[:, pc].transpose(1, 0, 2), co_post[:, pc].transpose(1, 0, 2)
    tr_pre, tr_post = co_pre[:, pt].mean(axis=2).T, co_post[:, pt].mean(axis=2).T
    w0 = omega[pc]
    s = w0.sum(axis=1, keepdims=True)
    w0 = np.where(s > 0, w0 / np.where(s > 0, s, 1.0), 1.0 / n_pc)
    w = _unit_weights(pre_c, tr_pre, zeta_omega, tol, w0)
    lw = _time_weights(pre_c, post_c, zeta_lambda, tol, np.tile(lam, (replications, 1)))
    return _estimate(pre_c, post_c, tr_pre, tr_post, w, lw)
