"""Finite-size scaling of a boundary: alpha_c(N) = alpha_c(inf) + a N^(-nu).

The boundaries located at several N are fitted by weighted least squares (weights from each
crossing's bootstrap interval). With as many parameters as points a free nu fits anything, so
its uncertainty is what matters: it comes from a parametric bootstrap (each alpha_c(N) redrawn
from a normal of its interval's width, fixed RNG seed) and, alongside, from the fit's covariance.
``nu`` may be fixed (e.g. 1/2), which leaves two parameters and an honest degree of freedom.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import OptimizeWarning, curve_fit

from amsweep.pipeline.errors import QueryError

__all__ = ["extrapolate", "fit", "FIT_RESAMPLES", "FIT_SEED", "NU_BOUNDS", "scaling_figure", "ScalingFit", "sigma_of"]

FIT_SEED = 20261  # fixed: the parametric bootstrap gives the same interval every time
FIT_RESAMPLES = 400
NU_BOUNDS = (0.05, 3.0)  # a power law slower than N^-0.05 or faster than N^-3 is not a scaling fit


@dataclass(frozen=True)
class ScalingFit:
    """alpha_c(inf) with its 95% interval (parametric bootstrap) and standard error (covariance)."""

    alpha_inf: float
    alpha_inf_low: float
    alpha_inf_high: float
    alpha_inf_se: float
    a: float
    nu: float
    nu_se: float
    nu_fixed: bool
    n_points: int
    chi2: float

    def line(self, reference: float | None = None) -> str:
        """One readable line: the extrapolation, its interval and, if given, the textbook value."""
        nu = f"nu = {self.nu:.2f} (fixed)" if self.nu_fixed else f"nu = {self.nu:.2f} +- {self.nu_se:.2f}"
        text = (
            f"alpha_c(inf) = {self.alpha_inf:.4f} +- {self.alpha_inf_se:.4f} "
            f"(95% bootstrap [{self.alpha_inf_low:.4f}, {self.alpha_inf_high:.4f}]), a = {self.a:.3g}, {nu}; "
            f"{self.n_points} N values, chi2 = {self.chi2:.2f}"
        )
        if reference is not None:
            inside = self.alpha_inf_low <= reference <= self.alpha_inf_high
            text += f"; reference {reference:g} {'inside' if inside else 'outside'} the interval"
        return text


def _model(nu: float | None):
    if nu is None:
        return lambda N, inf, a, nu_: inf + a * np.power(N, -nu_)
    return lambda N, inf, a: inf + a * np.power(N, -nu)


def _fit_once(N: np.ndarray, y: np.ndarray, sigma: np.ndarray, nu: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(parameters, covariance) of one weighted fit; starts from nu = 1/2 and the largest N's value."""
    f = _model(nu)
    p0 = [float(y[np.argmax(N)]), float((y[np.argmin(N)] - y[np.argmax(N)]) * np.sqrt(N.min()))]
    lower, upper = [-np.inf, -np.inf], [np.inf, np.inf]
    if nu is None:
        p0.append(0.5)
        lower.append(NU_BOUNDS[0])
        upper.append(NU_BOUNDS[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        params, cov = curve_fit(f, N, y, p0=p0, sigma=sigma, absolute_sigma=True, bounds=(lower, upper), maxfev=20000)
    return params, cov


def fit(N: ArrayLike, alpha_c: ArrayLike, sigma: ArrayLike, nu: float | None = None) -> ScalingFit:
    """Fit alpha_c(N) = alpha_inf + a N^-nu; ``nu`` None fits it too (needs 4 N for a residual)."""
    N_, y, s = (np.asarray(v, dtype=float) for v in (N, alpha_c, sigma))
    need = 3 if nu is None else 2
    if N_.size < need:
        raise QueryError(
            f"a finite-size fit {'with free nu ' if nu is None else ''}needs at least {need} N values with "
            f"a located boundary; got {N_.size} (fix nu with --nu to fit fewer)"
        )
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise QueryError("every boundary in a finite-size fit needs a finite, nonzero confidence interval")
    params, cov = _fit_once(N_, y, s, nu)
    f = _model(nu)
    chi2 = float(np.sum(((f(N_, *params) - y) / s) ** 2))
    rng = np.random.default_rng(FIT_SEED)
    draws = []
    for _ in range(FIT_RESAMPLES):
        try:
            draws.append(_fit_once(N_, y + rng.normal(0.0, s), s, nu)[0][0])
        except RuntimeError:  # a resample the optimizer cannot fit: left out, counted below
            continue
    if len(draws) < FIT_RESAMPLES // 2:
        raise QueryError(f"the finite-size fit failed on {FIT_RESAMPLES - len(draws)} of {FIT_RESAMPLES} resamples")
    low, high = np.quantile(draws, [0.025, 0.975])
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return ScalingFit(
        alpha_inf=float(params[0]),
        alpha_inf_low=float(low),
        alpha_inf_high=float(high),
        alpha_inf_se=float(se[0]),
        a=float(params[1]),
        nu=float(params[2] if nu is None else nu),
        nu_se=float(se[2]) if nu is None else 0.0,
        nu_fixed=nu is not None,
        n_points=int(N_.size),
        chi2=chi2,
    )


def sigma_of(table: pd.DataFrame, ci: float = 0.95) -> np.ndarray:
    """Standard deviation of each crossing from its bootstrap interval (normal approximation)."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + ci / 2.0))
    return (table["ci_high"].to_numpy(dtype=float) - table["ci_low"].to_numpy(dtype=float)) / (2.0 * z)


def extrapolate(
    table: pd.DataFrame, by: Sequence[str], nu: float | None = None, ci: float = 0.95
) -> list[tuple[dict[str, object], pd.DataFrame, ScalingFit]]:
    """One fit per group of ``by`` (family, rule, noise) over the N values with a located boundary."""
    out = []
    usable = table[np.isfinite(table["crossing"]) & np.isfinite(table["ci_low"]) & np.isfinite(table["ci_high"])]
    if usable.empty:
        raise QueryError("no boundary with a finite confidence interval to extrapolate")
    for key, group in usable.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values("N")
        sigma = sigma_of(group, ci)
        out.append((dict(zip(by, key)), group, fit(group["N"], group["crossing"], sigma, nu)))
    return out


def scaling_figure(
    fits: list[tuple[dict[str, object], pd.DataFrame, ScalingFit]],
    out: str | Path,
    along: str = "alpha",
    reference: float | None = None,
) -> Path:
    """alpha_c(N) against N^-nu (the fit is a straight line there) with intervals and the fit."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    nus = {round(f.nu, 3) for _, _, f in fits}
    nu_axis = fits[0][2].nu if len(nus) == 1 else 0.5
    for i, (key, group, f) in enumerate(fits):
        color = f"C{i % 10}"
        x = np.power(group["N"].to_numpy(dtype=float), -nu_axis)
        y = group["crossing"].to_numpy(dtype=float)
        err = np.vstack([y - group["ci_low"].to_numpy(dtype=float), group["ci_high"].to_numpy(dtype=float) - y])
        name = ", ".join(str(v) if k in ("family", "rule") else f"{k} = {v}" for k, v in key.items())
        ax.errorbar(x, y, yerr=err, fmt="o", color=color, capsize=3, label=f"{name}")
        grid = np.linspace(0.0, x.max() * 1.05, 100)
        N_grid = np.power(np.maximum(grid, 1e-12), -1.0 / nu_axis)
        ax.plot(grid, f.alpha_inf + f.a * np.power(N_grid, -f.nu), color=color, lw=1)
        band = [[f.alpha_inf - f.alpha_inf_low], [f.alpha_inf_high - f.alpha_inf]]
        ax.errorbar([0.0], [f.alpha_inf], yerr=band, fmt="s", color=color, capsize=3)
        for n, xv, yv in zip(group["N"], x, y):
            ax.annotate(f"N={n}", (xv, yv), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="k", ls=":", lw=1, label=f"reference {reference:g}")
    ax.set_xlabel(rf"$N^{{-{nu_axis:.2f}}}$")
    symbol = r"\alpha" if along == "alpha" else along
    ax.set_ylabel(rf"boundary ${symbol}_c(N)$")
    ax.legend(fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
