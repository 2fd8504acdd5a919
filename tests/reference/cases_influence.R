# Golden references for leave-one-group-out influence diagnostics of lmer fits
# (multilevel.inference.influence): one JSON per case in tests/reference/influence/<case>.json.
# Sourced by tests/reference/make_reference.R (which defines the ref_* helpers); run from the
# repository root:
#
#   Rscript tests/reference/make_reference.R influence
#
# HLMdiag (not installable here) computes these from brute-force refits (case_delete): each
# level of the grouping factor is deleted in turn and the model refitted by lme4. Here the
# refits are lme4's own `update(fit, data = data[rows without the level, ])` (same REML/ML,
# lme4's default optimiser and start), and the diagnostics are HLMdiag's definitions
# (diagnostic_functions.R: cooks.distance, mdffits, covtrace, covratio, rvc of a case_delete):
#
#   cooksd   = (b - b_i)' V^-1 (b - b_i) / p          V   = vcov(fit)
#   mdffits  = (b - b_i)' V_i^-1 (b - b_i) / p        V_i = vcov(refit without level i)
#   covtrace = | tr(V^-1 V_i) - p |
#   covratio = det(V_i) / det(V)
#   rvc      = varcomp_i / varcomp - 1, varcomp = HLMdiag's varcomp.mer: sigma^2, then the
#              lower triangle (column-major) of bdiag(VarCorr(fit)) named D<row><col>, only its
#              diagonal when that matrix is diagonal; entries that are structurally zero
#              (between two terms) are left out, as HLMdiag's "remove 0s".
#
# Polishing: lme4 stops its optimiser at xtol_rel = 1e-4, which leaves the last digits of theta
# (and so of b_i - b, a small difference) to chance. Every fit here (the full one and each
# refit) is therefore taken from lme4's optimum to the stationary point of lme4's own
# deviance function (mkLmerDevfun) by Newton steps with central differences of step 1e-3
# (the gradient by the five-point rule, the Hessian by the three-point rule; coordinates
# within 1e-2 of their lower bound held fixed; a step
# only while the deviance does not rise beyond 1e-11 relative (its rounding), at most 6,
# stopping once the largest step is below 1e-9), and the merMod is rebuilt at that theta by
# mkMerMod: the same rule as multilevel.inference.influence.polish.
# The wall time of the plain refits (update) is kept as seconds for the benchmark.
#
# Per case the JSON keys are: case, dataset, formula, reml, level, versions, fixef_names,
# beta, vcov (p x p rows), varcomp_names, varcomp, levels (deleted levels in level order), and
# per deleted level (arrays in the order of levels): beta_delete (rows), vcov_delete (a list of
# p x p rows), theta_delete (rows), sigma_delete, varcomp_delete (rows), cooksd, mdffits,
# covtrace, covratio, dfbeta (b - b_i, rows), rvc (rows), and seconds (the refits' wall time).

suppressPackageStartupMessages({
  library(lme4)
  library(Matrix)
})

influence_dir <- file.path("tests", "reference", "influence")
influence_versions <- ref_versions(c("lme4", "Matrix"))

# HLMdiag's varcomp.mer, with the structural zeros (between terms) left out.
influence_varcomp <- function(fit) {
  vc <- VarCorr(fit)
  blocks <- lapply(vc, function(m) as.matrix(m))
  sizes <- vapply(blocks, nrow, 1L)
  S <- as.matrix(bdiag(blocks))
  owner <- rep(seq_along(sizes), sizes)
  low <- which(!upper.tri(S), arr.ind = TRUE)
  low <- low[order(low[, 2], low[, 1]), , drop = FALSE]  # column-major
  diagonal <- all(S[upper.tri(S)] == 0)
  keep <- if (diagonal) low[, 1] == low[, 2] else owner[low[, 1]] == owner[low[, 2]]
  low <- low[keep, , drop = FALSE]
  vals <- c(sigma(fit)^2, S[low])
  names(vals) <- c("sigma2", paste0("D", low[, 1], low[, 2]))
  vals
}

influence_polish <- function(devfun, theta, lower, steps = 6) {
  hh <- 1e-3
  theta <- unname(theta)
  free <- which(!(theta - lower < 10 * hh))
  if (length(free) == 0) return(theta)
  m <- length(free)
  f0 <- devfun(theta)
  at <- function(shift) {
    t <- theta
    t[free] <- t[free] + shift
    devfun(t)
  }
  unit <- function(j, h) {
    e <- numeric(m)
    e[j] <- h
    e
  }
  for (it in seq_len(steps)) {
    g <- vapply(seq_len(m), function(j) {
      e <- unit(j, hh)
      (at(-2 * e) - 8 * at(-e) + 8 * at(e) - at(2 * e)) / (12 * hh)
    }, 0)
    H <- matrix(0, m, m)
    for (j in seq_len(m)) {
      ej <- unit(j, hh)
      H[j, j] <- (at(ej) - 2 * f0 + at(-ej)) / hh^2
      for (k in seq_len(j - 1)) {
        ek <- unit(k, hh)
        H[j, k] <- H[k, j] <- (at(ej + ek) - at(ej - ek) - at(-ej + ek) + at(-ej - ek)) /
          (4 * hh * hh)
      }
    }
    step <- tryCatch(solve(H, g), error = function(e) NULL)
    if (is.null(step) || any(!is.finite(step)) ||
        any(eigen(H, symmetric = TRUE, only.values = TRUE)$values <= 0)) break
    new <- theta
    new[free] <- new[free] - step
    f1 <- devfun(new)
    if (!(f1 <= f0 + 1e-11 * (1 + abs(f0)))) break  # rounding of the deviance allowed
    theta <- new
    f0 <- f1
    if (max(abs(step)) < 1e-9) break
  }
  theta
}

# The merMod of `formula` on `data` at the polished optimum from lme4's fit `start`.
influence_polished <- function(formula, data, reml, start) {
  lmod <- lFormula(as.formula(formula), data = data, REML = reml)
  devfun <- do.call(mkLmerDevfun, lmod)
  theta <- influence_polish(devfun, getME(start, "theta"), getME(start, "lower"))
  fval <- devfun(theta)
  mkMerMod(environment(devfun), opt = list(par = theta, fval = fval, conv = 0),
           lmod$reTrms, fr = lmod$fr, mc = quote(lmer()))
}

influence_case <- function(case, formula, data, level, dataset, reml = TRUE) {
  if (!ref_wanted(case, "influence")) return(invisible(NULL))
  fit0 <- lmer(as.formula(formula), data = data, REML = reml)
  fit <- influence_polished(formula, data, reml, fit0)
  stopifnot(REMLcrit(fit) <= REMLcrit(fit0) + 1e-9 * abs(REMLcrit(fit0)) || !reml)
  b <- fixef(fit)
  V <- as.matrix(vcov(fit))
  Vinv <- solve(V)
  vc <- influence_varcomp(fit)
  p <- length(b)
  levels_ <- levels(droplevels(data[[level]]))
  per <- list()
  t0 <- proc.time()[["elapsed"]]
  for (lv in levels_) {
    sub <- data[data[[level]] != lv, ]
    per[[lv]] <- suppressMessages(suppressWarnings(update(fit0, data = sub)))
  }
  seconds <- proc.time()[["elapsed"]] - t0
  for (lv in levels_) {
    sub <- data[data[[level]] != lv, ]
    per[[lv]] <- influence_polished(formula, sub, reml, per[[lv]])
  }
  rows <- lapply(levels_, function(lv) {
    m <- per[[lv]]
    bi <- fixef(m)
    Vi <- as.matrix(vcov(m))
    d <- b - bi
    list(beta = bi, vcov = Vi, theta = getME(m, "theta"), sigma = sigma(m),
         varcomp = influence_varcomp(m)[names(vc)],
         cooksd = drop(t(d) %*% Vinv %*% d) / p,
         mdffits = drop(t(d) %*% solve(Vi) %*% d) / p,
         covtrace = abs(sum(diag(Vinv %*% Vi)) - p),
         covratio = det(Vi) / det(V),
         dfbeta = d)
  })
  pick <- function(key) lapply(rows, function(r) I(unname(as.double(r[[key]]))))
  out <- list(
    case = case, dataset = dataset, formula = formula, reml = reml, level = level,
    versions = influence_versions,
    fixef_names = I(names(b)), beta = I(unname(b)), vcov = ref_rows(V),
    varcomp_names = I(names(vc)), varcomp = I(unname(vc)),
    levels = I(levels_),
    beta_delete = pick("beta"),
    vcov_delete = lapply(rows, function(r) ref_rows(r$vcov)),
    theta_delete = pick("theta"),
    sigma_delete = I(vapply(rows, function(r) r$sigma, 0)),
    varcomp_delete = pick("varcomp"),
    cooksd = I(vapply(rows, function(r) r$cooksd, 0)),
    mdffits = I(vapply(rows, function(r) r$mdffits, 0)),
    covtrace = I(vapply(rows, function(r) r$covtrace, 0)),
    covratio = I(vapply(rows, function(r) r$covratio, 0)),
    dfbeta = pick("dfbeta"),
    rvc = lapply(rows, function(r) I(unname(r$varcomp / vc - 1))),
    seconds = seconds
  )
  ref_write_json(out, file.path(influence_dir, paste0(case, ".json")))
  invisible(fit)
}

influence_hsb <- ref_read_dataset("hsb")
influence_sleep <- ref_read_dataset("sleepstudy")

influence_case("hsb_reml", "mathach ~ ses + (ses | school)", influence_hsb, "school", "hsb")
influence_case("sleepstudy_reml", "Reaction ~ Days + (Days | Subject)", influence_sleep,
               "Subject", "sleepstudy")
influence_case("sleepstudy_ml", "Reaction ~ Days + (Days | Subject)", influence_sleep,
               "Subject", "sleepstudy", reml = FALSE)
influence_case("sleepstudy_intercept_reml", "Reaction ~ Days + (1 | Subject)",
               influence_sleep, "Subject", "sleepstudy")
