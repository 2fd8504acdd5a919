"""GLM families and links, as R's ``family`` objects define them.

A family gives the conditional distribution of the response given the linear predictor
eta = X beta + Z b + offset: the link g with mu = g^{-1}(eta), the variance function V(mu),
the deviance residuals d(y, mu, wt) whose sum is the deviance, and R's ``aic`` function,
which for the binomial, Poisson and negative binomial families is exactly
-2 log p(y | mu) and for the families with a dispersion (Gamma, inverse Gaussian, Gaussian)
plugs in dispersion = deviance / sum(wt) and adds 2.  lme4's Laplace objective is
``ldL2 + ||u||^2 + aic(y, n, mu, wt, dev)``, so these functions must agree with R's to the
last bits: every link keeps R's clamping of extreme linear predictors (logit at |eta| > 30,
probit and cauchit at the quantile of machine epsilon, log at exp(eta) < epsilon, ...).

``initialize`` is R's ``family$initialize``: it checks that the response lies in the
family's support (raising :class:`ResponseError`), turns a binomial response given as 0/1,
a two-level factor, proportions with trials as weights, or a (successes, failures) matrix
into proportions and weights, and returns the starting mu of the GLM fit.

Counterparts: R's ``stats::family`` (``binomial``, ``poisson``, ``Gamma``,
``inverse.gaussian``, ``gaussian``, ``make.link``) and MASS's ``negative.binomial(theta)``,
which lme4's ``glmer.nb`` uses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from multilevel.exceptions import DataError

__all__ = [
    "Binomial",
    "Family",
    "Gamma",
    "Gaussian",
    "InverseGaussian",
    "Link",
    "NegativeBinomial",
    "Poisson",
    "ResponseError",
    "ResponseWarning",
    "Start",
    "family",
    "link",
]

EPS = float(np.finfo(float).eps)  # R's .Machine$double.eps


class ResponseError(DataError):
    """The response lies outside the family's support (negative counts, proportions above 1,
    non-positive values for Gamma, ...). Raised before any fitting."""


class ResponseWarning(UserWarning):
    """A response R accepts with a warning: non-integer binomial successes or counts."""


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


# ------------------------------------------------------------------------------ links


@dataclass(frozen=True)
class Link:
    """A link function g: ``linkfun`` (eta = g(mu)), ``linkinv`` (mu = g^{-1}(eta)),
    ``mu_eta`` (d mu / d eta) and ``valid_eta``, as R's ``make.link(name)``.

    Examples
    --------
    >>> lk = link("logit")
    >>> float(lk.linkinv(0.0))
    0.5
    >>> float(lk.mu_eta(0.0))
    0.25
    """

    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]
    valid_eta: Callable[[np.ndarray], bool]


def _always(_x) -> bool:
    return True


def _finite_positive(eta) -> bool:
    eta = _arr(eta)
    return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


def _finite_nonzero(eta) -> bool:
    eta = _arr(eta)
    return bool(np.all(np.isfinite(eta)) and np.all(eta != 0))


_LOGIT_THRESH = 30.0


def _logit_linkinv(eta):
    eta = _arr(eta)
    with np.errstate(over="ignore"):
        t = np.where(
            eta < -_LOGIT_THRESH, EPS, np.where(eta > _LOGIT_THRESH, 1.0 / EPS, np.exp(eta))
        )
    return t / (1.0 + t)


def _logit_mu_eta(eta):
    eta = _arr(eta)
    inside = np.abs(eta) <= _LOGIT_THRESH
    e = np.exp(np.where(inside, eta, 0.0))
    return np.where(inside, e / ((1.0 + e) * (1.0 + e)), EPS)


_PROBIT_THRESH = -float(special.ndtri(EPS))


def _probit_linkinv(eta):
    return special.ndtr(np.clip(_arr(eta), -_PROBIT_THRESH, _PROBIT_THRESH))


def _probit_mu_eta(eta):
    eta = _arr(eta)
    return np.maximum(np.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi), EPS)


def _qcauchy(p):
    """R's qcauchy(p) for the standard Cauchy: -1/tan(pi p) below 1/2, 1/tan(pi (1 - p))
    above."""
    p = _arr(p)
    lower = p <= 0.5
    with np.errstate(divide="ignore"):
        return np.where(
            lower,
            -1.0 / np.tan(np.pi * np.where(lower, p, 0.25)),
            1.0 / np.tan(np.pi * np.where(lower, 0.25, 1.0 - p)),
        )


def _pcauchy(x):
    """R's pcauchy(x): atan(1/x)/pi in the tails, which keeps small tail probabilities
    accurate."""
    x = _arr(x)
    big = np.abs(x) > 1.0
    safe = np.where(big, x, 1.0)
    tail = np.arctan(1.0 / safe) / np.pi
    return np.where(big, np.where(x > 0, 1.0 - tail, -tail), 0.5 + np.arctan(x) / np.pi)


_CAUCHIT_THRESH = -float(_qcauchy(EPS))


def _cauchit_linkinv(eta):
    return _pcauchy(np.clip(_arr(eta), -_CAUCHIT_THRESH, _CAUCHIT_THRESH))


def _cauchit_mu_eta(eta):
    eta = _arr(eta)
    return np.maximum(1.0 / (np.pi * (1.0 + eta * eta)), EPS)


def _cloglog_linkinv(eta):
    with np.errstate(over="ignore"):
        mu = -np.expm1(-np.exp(_arr(eta)))
    return np.maximum(np.minimum(mu, 1.0 - EPS), EPS)


def _cloglog_mu_eta(eta):
    eta = np.minimum(_arr(eta), 700.0)
    with np.errstate(over="ignore"):
        return np.maximum(np.exp(eta) * np.exp(-np.exp(eta)), EPS)


def _log_linkinv(eta):
    with np.errstate(over="ignore"):
        return np.maximum(np.exp(_arr(eta)), EPS)


_LINKS: dict[str, Link] = {
    "logit": Link(
        "logit",
        lambda mu: np.log(_arr(mu) / (1.0 - _arr(mu))),
        _logit_linkinv,
        _logit_mu_eta,
        _always,
    ),
    "probit": Link(
        "probit", lambda mu: special.ndtri(_arr(mu)), _probit_linkinv, _probit_mu_eta, _always
    ),
    "cauchit": Link("cauchit", _qcauchy, _cauchit_linkinv, _cauchit_mu_eta, _always),
    "cloglog": Link(
        "cloglog",
        lambda mu: np.log(-np.log(1.0 - _arr(mu))),
        _cloglog_linkinv,
        _cloglog_mu_eta,
        _always,
    ),
    "identity": Link("identity", _arr, _arr, lambda eta: np.ones_like(_arr(eta)), _always),
    "log": Link("log", lambda mu: np.log(_arr(mu)), _log_linkinv, _log_linkinv, _always),
    "sqrt": Link(
        "sqrt",
        lambda mu: np.sqrt(_arr(mu)),
        lambda eta: _arr(eta) ** 2,
        lambda eta: 2.0 * _arr(eta),
        _finite_positive,
    ),
    "inverse": Link(
        "inverse",
        lambda mu: 1.0 / _arr(mu),
        lambda eta: 1.0 / _arr(eta),
        lambda eta: -1.0 / _arr(eta) ** 2,
        _finite_nonzero,
    ),
    "1/mu^2": Link(
        "1/mu^2",
        lambda mu: 1.0 / _arr(mu) ** 2,
        lambda eta: 1.0 / np.sqrt(_arr(eta)),
        lambda eta: -1.0 / (2.0 * _arr(eta) ** 1.5),
        _finite_positive,
    ),
}


def link(name: str | Link) -> Link:
    """The link called ``name`` (R's ``make.link``): "logit", "probit", "cauchit", "cloglog",
    "identity", "log", "sqrt", "inverse", "1/mu^2".

    Examples
    --------
    >>> link("log").name
    'log'
    >>> link("logt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown link 'logt'; ...
    """
    if isinstance(name, Link):
        return name
    try:
        return _LINKS[name]
    except KeyError:
        known = ", ".join(sorted(_LINKS))
        raise ValueError(f"unknown link {name!r}; links are {known}") from None


# ------------------------------------------------------------------------------ families


@dataclass(frozen=True)
class Start:
    """What ``Family.initialize`` returns: the response as the fit uses it (proportions for
    the binomial), the prior weights (times the trials for a binomial (successes, failures)
    response), R's starting mu and the binomial trials ``n`` (1 elsewhere)."""

    y: np.ndarray
    weights: np.ndarray
    mustart: np.ndarray
    n: np.ndarray


class Family:
    """Base class of the GLM families. Subclasses set ``name``, ``links`` (the allowed link
    names, the canonical first) and ``has_dispersion`` and define the variance, deviance
    residuals, ``aic`` and the response checks."""

    name: str = ""
    links: tuple[str, ...] = ()
    has_dispersion: bool = False

    def __init__(self, link: str | Link | None = None):
        name = self.links[0] if link is None else (link.name if isinstance(link, Link) else link)
        if name not in self.links:
            raise ValueError(
                f"link {name!r} is not available for the {self.name} family; "
                f"choose one of {', '.join(self.links)}"
            )
        self.link = _LINKS[name] if not isinstance(link, Link) else link

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))

    # link pass-throughs
    def linkfun(self, mu):
        """eta = g(mu)."""
        return self.link.linkfun(_arr(mu))

    def linkinv(self, eta):
        """mu = g^{-1}(eta), clamped as R clamps it."""
        return self.link.linkinv(_arr(eta))

    def mu_eta(self, eta):
        """d mu / d eta at eta."""
        return self.link.mu_eta(_arr(eta))

    def valid_eta(self, eta) -> bool:
        """R's ``family$valideta``."""
        return self.link.valid_eta(eta)

    def valid_mu(self, mu) -> bool:
        """R's ``family$validmu``."""
        return True

    def variance(self, mu):
        raise NotImplementedError

    def dev_resids(self, y, mu, wt):
        """Deviance residuals (squared, signless): their sum is the deviance."""
        raise NotImplementedError

    def aic(self, y, n, mu, wt, dev) -> float:
        """R's ``family$aic(y, n, mu, wt, dev)``: -2 log-likelihood (plus 2 for an estimated
        dispersion)."""
        raise NotImplementedError

    def check_response(self, y) -> None:
        """Raise :class:`ResponseError` if y is outside the family's support."""
        y = _arr(y)
        if not np.all(np.isfinite(y)):
            raise ResponseError(
                f"the response of the {self.name} family has "
                f"{int(np.sum(~np.isfinite(y)))} non-finite values"
            )

    def _mustart(self, y: np.ndarray) -> np.ndarray:
        return y.copy()

    def initialize(self, y, weights=None) -> Start:
        """R's ``family$initialize``: check the response and return a :class:`Start`."""
        y = _arr(y)
        if y.ndim != 1:
            raise ResponseError(f"the {self.name} family needs a one-column response")
        w = np.ones_like(y) if weights is None else _arr(weights)
        self.check_response(y)
        return Start(y, w, self._mustart(y), np.ones_like(y))


def _bad_rows(mask: np.ndarray, limit: int = 5) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    return f"rows (0-based) {shown}{more}"


def _ylogy(y, mu):
    """y log(y / mu), 0 where y = 0."""
    pos = y > 0
    return np.where(pos, y * np.log(np.where(pos, y, 1.0) / mu), 0.0)


class Binomial(Family):
    """Binomial family (R's ``binomial``): links logit (canonical), probit, cauchit, cloglog,
    log. The response is a proportion y with prior weights (trials), so V(mu) = mu (1 - mu).

    Examples
    --------
    >>> import numpy as np
    >>> fam = Binomial(link="probit")
    >>> float(fam.linkinv(0.0))
    0.5
    >>> start = Binomial().initialize(np.array([[2.0, 12.0], [3.0, 9.0]]))
    >>> start.y.tolist(), start.weights.tolist()
    ([0.14285714285714285, 0.25], [14.0, 12.0])
    >>> Binomial().initialize(np.array([0.5, 1.2]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    multilevel.families.ResponseError: binomial response: proportions must lie in [0, 1]; ...
    """

    name = "binomial"
    links = ("logit", "probit", "cauchit", "cloglog", "log")

    def valid_mu(self, mu) -> bool:
        mu = _arr(mu)
        return bool(np.all(np.isfinite(mu)) and np.all((mu > 0) & (mu < 1)))

    def variance(self, mu):
        mu = _arr(mu)
        return mu * (1.0 - mu)

    def dev_resids(self, y, mu, wt):
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))

    def aic(self, y, n, mu, wt, dev) -> float:
        y, n, mu, wt = _arr(y), _arr(n), _arr(mu), _arr(wt)
        m = n if np.any(n > 1) else wt
        k = np.round(m * y)
        size = np.round(m)
        logpmf = (
            special.gammaln(size + 1)
            - special.gammaln(k + 1)
            - special.gammaln(size - k + 1)
            + special.xlogy(k, mu)
            + special.xlog1py(size - k, -mu)
        )
        scale = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
        return float(-2.0 * np.sum(scale * logpmf))

    def check_response(self, y) -> None:
        super().check_response(y)
        y = _arr(y)
        bad = (y < 0) | (y > 1)
        if np.any(bad):
            raise ResponseError(
                f"binomial response: proportions must lie in [0, 1]; {_bad_rows(bad)} are outside"
            )

    def initialize(self, y, weights=None) -> Start:
        """0/1 (numeric or bool), a two-level factor (the first level is failure),
        proportions with ``weights`` = trials, or an n x 2 (successes, failures) array."""
        y = _binary_from_factor(y)
        y = _arr(y)
        w = np.ones(y.shape[0]) if weights is None else _arr(weights)
        if y.ndim == 2 and y.shape[1] == 2:
            return self._initialize_counts(y, w)
        if y.ndim != 1:
            raise ResponseError(
                "binomial response: give 0/1 values, proportions with "
                "weights = trials, or two columns (successes, failures)"
            )
        y = np.where(w == 0, 0.0, y)
        self.check_response(y)
        successes = w * y
        if np.any(np.abs(successes - np.round(successes)) > 1e-3):
            warnings.warn(
                "non-integer #successes in a binomial glm!", ResponseWarning, stacklevel=2
            )
        return Start(y, w, (w * y + 0.5) / (w + 1.0), np.ones_like(y))

    def _initialize_counts(self, y: np.ndarray, w: np.ndarray) -> Start:
        if not np.all(np.isfinite(y)):
            raise ResponseError("binomial response: successes and failures must be finite")
        bad = np.any(y < 0, axis=1)
        if np.any(bad):
            raise ResponseError(
                f"binomial response: negative successes or failures in {_bad_rows(bad)}"
            )
        if np.any(np.abs(y - np.round(y)) > 1e-3):
            warnings.warn("non-integer counts in a binomial glm!", ResponseWarning, stacklevel=3)
        n = y[:, 0] + y[:, 1]
        prop = np.where(n == 0, 0.0, y[:, 0] / np.where(n == 0, 1.0, n))
        return Start(prop, w * n, (n * prop + 0.5) / (n + 1.0), n)


def _binary_from_factor(y):
    """A two-level factor (pandas categorical, or strings/objects with two values) as 0/1:
    the first level (categories' order, else sorted) is 0, as R's ``y != levels(y)[1]``."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return y
    if isinstance(y, (pd.Series, pd.Categorical)) and isinstance(y.dtype, pd.CategoricalDtype):
        cats = y.dtype.categories
        codes = np.asarray(pd.Categorical(y).codes)
        if np.any(codes < 0):
            raise ResponseError("binomial response: missing values in the factor response")
        if len(cats) > 2:
            warnings.warn(
                f"binomial response is a factor with {len(cats)} levels: the first "
                f"level ({cats[0]!r}) is failure, all others success",
                ResponseWarning,
                stacklevel=3,
            )
        return (codes != 0).astype(float)
    arr = np.asarray(y)
    if arr.dtype == bool:
        return arr.astype(float)
    if arr.dtype.kind in "OUS":
        levels = sorted(set(arr.tolist()))
        return (arr != levels[0]).astype(float)
    return y


class Poisson(Family):
    """Poisson family (R's ``poisson``): links log (canonical), identity, sqrt; V(mu) = mu.

    Examples
    --------
    >>> import numpy as np
    >>> fam = family("poisson")
    >>> fam.initialize(np.array([0.0, 3.0])).mustart.tolist()
    [0.1, 3.1]
    >>> fam.initialize(np.array([1.0, -1.0]))
    Traceback (most recent call last):
    ...
    multilevel.families.ResponseError: poisson response: negative counts in rows (0-based) 1
    """

    name = "poisson"
    links = ("log", "identity", "sqrt")

    def valid_mu(self, mu) -> bool:
        mu = _arr(mu)
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def variance(self, mu):
        return _arr(mu)

    def dev_resids(self, y, mu, wt):
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        return 2.0 * np.where(y > 0, wt * (_ylogy(y, mu) - (y - mu)), mu * wt)

    def aic(self, y, n, mu, wt, dev) -> float:
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        logpmf = special.xlogy(y, mu) - mu - special.gammaln(y + 1.0)
        return float(-2.0 * np.sum(logpmf * wt))

    def check_response(self, y) -> None:
        super().check_response(y)
        bad = _arr(y) < 0
        if np.any(bad):
            raise ResponseError(f"poisson response: negative counts in {_bad_rows(bad)}")

    def _mustart(self, y):
        return y + 0.1


class Gamma(Family):
    """Gamma family (R's ``Gamma``): links inverse (canonical), log, identity; V(mu) = mu^2.

    Examples
    --------
    >>> import numpy as np
    >>> Gamma(link="log").dev_resids(np.array([2.0, 1.0]), np.array([2.0, 2.0]), 1.0).round(6)
    array([-0.      ,  0.386294])
    >>> Gamma().initialize(np.array([1.0, 0.0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    multilevel.families.ResponseError: Gamma response: values must be positive; ...
    """

    name = "Gamma"
    links = ("inverse", "log", "identity")
    has_dispersion = True

    def valid_mu(self, mu) -> bool:
        mu = _arr(mu)
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def variance(self, mu):
        return _arr(mu) ** 2

    def dev_resids(self, y, mu, wt):
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        ratio = np.where(y == 0, 1.0, y / mu)
        return -2.0 * wt * (np.log(ratio) - (y - mu) / mu)

    def aic(self, y, n, mu, wt, dev) -> float:
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        disp = dev / np.sum(wt)
        shape = 1.0 / disp
        scale = mu * disp
        logpdf = (
            special.xlogy(shape - 1.0, y)
            - y / scale
            - special.gammaln(shape)
            - shape * np.log(scale)
        )
        return float(-2.0 * np.sum(logpdf * wt) + 2.0)

    def check_response(self, y) -> None:
        super().check_response(y)
        bad = _arr(y) <= 0
        if np.any(bad):
            raise ResponseError(
                f"Gamma response: values must be positive; {_bad_rows(bad)} are not"
            )


class InverseGaussian(Family):
    """Inverse Gaussian family (R's ``inverse.gaussian``): links 1/mu^2 (canonical), inverse,
    identity, log; V(mu) = mu^3.

    Examples
    --------
    >>> InverseGaussian().link.name
    '1/mu^2'
    """

    name = "inverse.gaussian"
    links = ("1/mu^2", "inverse", "identity", "log")
    has_dispersion = True

    def variance(self, mu):
        return _arr(mu) ** 3

    def dev_resids(self, y, mu, wt):
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        return wt * (y - mu) ** 2 / (y * mu**2)

    def aic(self, y, n, mu, wt, dev) -> float:
        y, wt = _arr(y), _arr(wt)
        sw = np.sum(wt)
        return float(
            sw * (1.0 + np.log(dev / sw * 2.0 * np.pi)) + 3.0 * np.sum(np.log(y) * wt) + 2.0
        )

    def check_response(self, y) -> None:
        super().check_response(y)
        bad = _arr(y) <= 0
        if np.any(bad):
            raise ResponseError(
                f"inverse.gaussian response: values must be positive; {_bad_rows(bad)} are not"
            )


class NegativeBinomial(Family):
    """Negative binomial family with a known dispersion ``theta`` (MASS's
    ``negative.binomial(theta)``, which lme4's ``glmer.nb`` holds fixed while it fits the
    GLMM and updates between fits): V(mu) = mu + mu^2 / theta; links log (the usual),
    sqrt, identity.

    Examples
    --------
    >>> import numpy as np
    >>> fam = NegativeBinomial(theta=2.0)
    >>> float(fam.variance(np.array([4.0]))[0])
    12.0
    >>> fam
    NegativeBinomial(theta=2.0, link='log')
    """

    name = "negative.binomial"
    links = ("log", "sqrt", "identity")

    def __init__(self, theta: float, link: str | Link | None = None):
        if not (np.isfinite(theta) and theta > 0):
            raise ValueError(f"negative binomial theta must be positive and finite, got {theta}")
        self.theta = float(theta)
        super().__init__(link)

    def __repr__(self) -> str:
        return f"NegativeBinomial(theta={self.theta!r}, link={self.link.name!r})"

    def valid_mu(self, mu) -> bool:
        return bool(np.all(_arr(mu) > 0))

    def variance(self, mu):
        mu = _arr(mu)
        return mu + mu * mu / self.theta

    def dev_resids(self, y, mu, wt):
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        th = self.theta
        return (
            2.0
            * wt
            * (y * np.log(np.maximum(1.0, y) / mu) - (y + th) * np.log((y + th) / (mu + th)))
        )

    def aic(self, y, n, mu, wt, dev) -> float:
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        th = self.theta
        term = (
            (y + th) * np.log(mu + th)
            - special.xlogy(y, mu)
            + special.gammaln(y + 1.0)
            - th * np.log(th)
            + special.gammaln(th)
            - special.gammaln(th + y)
        )
        return float(2.0 * np.sum(term * wt))

    def check_response(self, y) -> None:
        super().check_response(y)
        bad = _arr(y) < 0
        if np.any(bad):
            raise ResponseError(f"negative.binomial response: negative counts in {_bad_rows(bad)}")

    def _mustart(self, y):
        return y + (y == 0) / 6.0


class Gaussian(Family):
    """Gaussian family (R's ``gaussian``): links identity (canonical), log, inverse; V = 1.

    Examples
    --------
    >>> Gaussian().variance([3.0]).tolist()
    [1.0]
    """

    name = "gaussian"
    links = ("identity", "log", "inverse")
    has_dispersion = True

    def variance(self, mu):
        return np.ones_like(_arr(mu))

    def dev_resids(self, y, mu, wt):
        y, mu, wt = _arr(y), _arr(mu), _arr(wt)
        return wt * (y - mu) ** 2

    def aic(self, y, n, mu, wt, dev) -> float:
        y, wt = _arr(y), _arr(wt)
        nobs = y.size
        return float(nobs * (np.log(dev / nobs * 2.0 * np.pi) + 1.0) + 2.0 - np.sum(np.log(wt)))

    def check_response(self, y) -> None:
        super().check_response(y)
        y = _arr(y)
        if (self.link.name == "log" and np.any(y <= 0)) or (
            self.link.name == "inverse" and np.any(y == 0)
        ):
            raise ResponseError(
                f"gaussian response with the {self.link.name} link: cannot "
                "find valid starting values (non-positive or zero values)"
            )


_FAMILIES: dict[str, type[Family]] = {
    "binomial": Binomial,
    "poisson": Poisson,
    "gamma": Gamma,
    "inverse.gaussian": InverseGaussian,
    "inverse_gaussian": InverseGaussian,
    "inversegaussian": InverseGaussian,
    "gaussian": Gaussian,
    "negative.binomial": NegativeBinomial,
    "negative_binomial": NegativeBinomial,
    "negbin": NegativeBinomial,
}


def family(spec: str | Family, link: str | None = None, **kwargs) -> Family:
    """Resolve a family: a :class:`Family` instance is returned as it is; a name
    ("binomial", "poisson", "Gamma", "inverse.gaussian", "gaussian", "negative.binomial",
    case-insensitive, "_" for ".") makes one with ``link`` (the canonical link if None) and
    ``kwargs`` (``theta`` for the negative binomial).

    Examples
    --------
    >>> family("binomial")
    Binomial(link='logit')
    >>> family("Gamma", link="log")
    Gamma(link='log')
    >>> family("negative.binomial", theta=1.5)
    NegativeBinomial(theta=1.5, link='log')
    >>> family("bernoulli")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown family 'bernoulli'; ...
    """
    if isinstance(spec, Family):
        if link is not None and link != spec.link.name:
            raise ValueError(f"family {spec!r} given with a different link {link!r}")
        return spec
    if isinstance(spec, type) and issubclass(spec, Family):
        return spec(link=link, **kwargs)
    if not isinstance(spec, str):
        raise TypeError(f"family must be a name or a Family, not {type(spec).__name__}")
    cls = _FAMILIES.get(spec.strip().lower())
    if cls is None:
        raise ValueError(
            f"unknown family {spec!r}; families are binomial, poisson, Gamma, "
            "inverse.gaussian, gaussian, negative.binomial (with theta=)"
        )
    if cls is NegativeBinomial and "theta" not in kwargs:
        raise ValueError(
            "the negative.binomial family needs its dispersion: "
            "family('negative.binomial', theta=...)"
        )
    return cls(link=link, **kwargs)
