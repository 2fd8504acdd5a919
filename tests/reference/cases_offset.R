# Golden references for offsets in least-squares fits: R's lm(offset=) and offset(expr) terms
# (multilevel.ols) and lme4's lmList(offset=) (multilevel.lmlist), one JSON per case in
# tests/reference/offset/<case>.json. Sourced by tests/reference/make_reference.R (which
# defines the ref_* helpers); run from the repository root:
#
#   Rscript tests/reference/make_reference.R offset
#
# Data: tests/reference/data/sleepstudy_ls_offset.csv (written here): sleepstudy with
# t = 1 + Days / 5, w = 1 + Days / 10 and o = round(20 sin(row), 3) with o missing in rows
# 5, 77 and 150 (1-based), so that a missing offset drops its row as lm's na.omit does.
#
# Per ols case the keys are: case, formula, weights, offset (column names of lm's weights= and
# offset=, or null), versions, names, coef, se (lm's), se_hc1 (sandwich::vcovHC type "HC1"),
# sigma, r2, adj_r2, fvalue (R's current summary.lm: from the fitted values without the
# offset, computed here), f_df (numerator, denominator), r2_r42, adj_r2_r42, fvalue_r42 (the
# output of the summary.lm of R 4.2, which keeps the offset in the fitted values), loglik,
# aic, nobs, rows (1-based rows used), fitted, resid.
# Per lmList case: case, formula (lme4's, with "| group"), offset, versions, names, levels,
# coef (levels x names), se (summary(lmList, pool = TRUE): the pooled residual SD),
# sigma (each group's own lm sigma), pooled_sigma, rows (1-based), fitted, resid (fitted and
# resid of each group's lm, in the order of rows).

suppressPackageStartupMessages({
  library(lme4)
  library(sandwich)
})

offset_dir <- file.path("tests", "reference", "offset")
offset_versions <- ref_versions(c("lme4", "sandwich"))

if (ref_wanted("offset", "offset") || any(startsWith(ref_args, "offset_"))) {
  d <- ref_read_dataset("sleepstudy")
  d$t <- 1 + d$Days / 5
  d$w <- 1 + d$Days / 10
  d$o <- round(20 * sin(seq_len(nrow(d))), 3)
  d$o[c(5, 77, 150)] <- NA
  offset_path <- ref_write_data_file(d, "sleepstudy_ls_offset",
    "sleepstudy with t = 1 + Days/5, w = 1 + Days/10, o = round(20 sin(row), 3), o NA in rows 5, 77, 150")
  offset_data <- ref_read_data_file(offset_path)
}

offset_ols <- function(case, formula, weights = NULL, offset = NULL) {
  if (!ref_wanted(case, "offset")) return(invisible(NULL))
  dd <- offset_data
  dd$.w <- if (is.null(weights)) NULL else dd[[weights]]
  dd$.o <- if (is.null(offset)) NULL else dd[[offset]]
  fit <- if (is.null(weights) && is.null(offset)) {
    lm(as.formula(formula), data = dd)
  } else if (is.null(weights)) {
    lm(as.formula(formula), data = dd, offset = .o)
  } else if (is.null(offset)) {
    lm(as.formula(formula), data = dd, weights = .w)
  } else {
    lm(as.formula(formula), data = dd, weights = .w, offset = .o)
  }
  s <- summary(fit)
  fs <- s$fstatistic
  # R's current summary.lm takes R-squared and F from the fitted values without the offset;
  # the summary.lm of R 4.2 (installed here) keeps the offset in them. Both are recorded: the
  # current definition computed here from the fit, and R 4.2's output.
  f0 <- fitted(fit) - (if (is.null(fit$offset)) 0 else fit$offset)
  w0 <- if (is.null(weights(fit))) rep(1, length(f0)) else weights(fit)
  int <- attr(terms(fit), "intercept") == 1
  mss <- if (int) sum(w0 * (f0 - sum(w0 * f0) / sum(w0))^2) else sum(w0 * f0^2)
  rss <- sum(w0 * residuals(fit)^2)
  r2 <- mss / (mss + rss)
  n <- nobs(fit)
  p <- length(coef(fit))
  adj_r2 <- 1 - (1 - r2) * ((n - int) / fit$df.residual)
  fvalue <- (mss / (p - int)) / (rss / fit$df.residual)
  out <- list(
    case = case, data_file = offset_path, formula = formula, weights = weights,
    offset = offset, versions = offset_versions,
    names = I(names(coef(fit))), coef = I(unname(coef(fit))),
    se = I(unname(s$coefficients[, 2])),
    se_hc1 = I(unname(sqrt(diag(vcovHC(fit, type = "HC1"))))),
    sigma = s$sigma, r2 = r2, adj_r2 = adj_r2, fvalue = fvalue,
    f_df = if (is.null(fs)) NULL else I(unname(fs[2:3])),
    r2_r42 = s$r.squared, adj_r2_r42 = s$adj.r.squared,
    fvalue_r42 = if (is.null(fs)) NULL else unname(fs[1]),
    loglik = as.numeric(logLik(fit)), aic = AIC(fit), nobs = nobs(fit),
    rows = as.integer(names(fitted(fit))),
    fitted = unname(fitted(fit)), resid = unname(residuals(fit))
  )
  ref_write_json(out, file.path(offset_dir, paste0(case, ".json")))
}

offset_lmlist <- function(case, formula, offset = NULL) {
  if (!ref_wanted(case, "offset")) return(invisible(NULL))
  dd <- offset_data
  fit <- if (is.null(offset)) {
    lmList(as.formula(formula), data = dd)
  } else {
    lmList(as.formula(formula), data = dd, offset = dd[[offset]])
  }
  s <- summary(fit, pool = TRUE)
  cf <- as.matrix(coef(fit))
  fits <- unclass(fit)
  fitted_all <- unlist(lapply(fits, fitted))
  rows <- as.integer(unlist(lapply(fits, function(f) names(fitted(f)))))
  resid_all <- unlist(lapply(fits, residuals))
  o <- order(rows)
  out <- list(
    case = case, data_file = offset_path, formula = formula, offset = offset,
    versions = offset_versions, names = I(colnames(cf)), levels = I(rownames(cf)),
    coef = ref_rows(cf), se = ref_rows(s$coefficients[, 2, ]),
    sigma = unname(vapply(fits, function(f) summary(f)$sigma, 0)),
    pooled_sigma = s$RSE,
    rows = rows[o], fitted = unname(fitted_all[o]), resid = unname(resid_all[o])
  )
  ref_write_json(out, file.path(offset_dir, paste0(case, ".json")))
}

offset_ols("ols_formula_offset", "Reaction ~ Days + offset(10 * log(t))")
offset_ols("ols_offset_weights", "Reaction ~ Days", weights = "w", offset = "o")
offset_ols("ols_both_offsets", "Reaction ~ Days + offset(10 * log(t))", offset = "o")
offset_ols("ols_offset_no_intercept", "Reaction ~ 0 + Days", offset = "o")
offset_ols("ols_offset_weights_no_intercept", "Reaction ~ 0 + Days + t", weights = "w",
           offset = "o")
offset_lmlist("lmlist_formula_offset", "Reaction ~ Days + offset(10 * log(t)) | Subject")
offset_lmlist("lmlist_offset", "Reaction ~ Days | Subject", offset = "o")
