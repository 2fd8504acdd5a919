# Golden references for the invariance cases of issue 15: lme4 on sleepstudy with the response
# shifted or rescaled, a predictor rescaled or shifted far from zero, constant prior weights of
# extreme size, a response near 2^62. One JSON per case in tests/reference/robust/<case>.json.
# Sourced by tests/reference/make_reference.R (which defines the ref_* helpers); run from the
# repository root:
#
#   Rscript tests/reference/make_reference.R robust
#
# Per case, the JSON keys are: case, formula, reml, transform (what was done to sleepstudy, as
# tests/test_invariance.py does it), versions, and either theta, sigma, objective (REMLcrit or
# deviance), beta, fixef_names, or error (lme4's message when it refuses). lme4 forms the
# cross-products from the raw columns, so in some cases its numbers are off (theta and sigma of
# the weighted fits, for one): the test says per case whether it compares with lme4 or with
# the exact transform of the untransformed fit, and why.

suppressPackageStartupMessages(library(lme4))

robust_dir <- file.path("tests", "reference", "robust")
dir.create(robust_dir, showWarnings = FALSE)
robust_versions <- ref_versions(c("lme4", "Matrix"))
robust_data <- ref_read_dataset("sleepstudy")

robust_case <- function(case, formula, transform, reml = TRUE, weights = NULL) {
  if (!ref_wanted(case, "robust")) return(invisible())
  d <- transform(robust_data)
  d$w__ <- if (is.null(weights)) rep(1, nrow(d)) else weights
  out <- list(case = case, formula = formula, reml = reml,
              transform = deparse(transform), versions = robust_versions)
  m <- tryCatch(
    suppressWarnings(lmer(as.formula(formula), d, REML = reml,
                          weights = if (is.null(weights)) NULL else w__)),
    error = function(e) e)
  if (inherits(m, "error")) {
    out$error <- conditionMessage(m)
  } else {
    out$theta <- unname(getME(m, "theta"))
    out$sigma <- sigma(m)
    out$objective <- if (reml) REMLcrit(m) else deviance(m)
    out$beta <- unname(fixef(m))
    out$fixef_names <- names(fixef(m))
  }
  ref_write_json(out, file.path(robust_dir, paste0(case, ".json")))
}

ri <- "Reaction ~ Days + (1 | Subject)"
rs <- "Reaction ~ Days + (Days | Subject)"
rx <- "Reaction ~ x + (1 | Subject)"
robust_case("base_intercept", ri, function(d) d)
robust_case("base_slopes", rs, function(d) d)
robust_case("base_intercept_ml", ri, function(d) d, reml = FALSE)
robust_case("y_plus_1e8", ri, function(d) transform(d, Reaction = Reaction + 1e8))
robust_case("y_plus_1e8_slopes", rs, function(d) transform(d, Reaction = Reaction + 1e8))
robust_case("y_plus_1e8_ml", ri, function(d) transform(d, Reaction = Reaction + 1e8),
            reml = FALSE)
for (k in c(-300, -100, -10, 10, 100, 300)) {
  robust_case(sprintf("y_times_1e%d", k), ri,
              eval(bquote(function(d) transform(d, Reaction = Reaction * 10^.(k)))))
  robust_case(sprintf("x_times_1e%d", k), rx,
              eval(bquote(function(d) transform(d, x = Days * 10^.(k)))))
}
robust_case("x_plus_1e6_sd", rx, function(d) transform(d, x = Days + 1e6 * sd(Days)))
robust_case("x_plus_1e8_sd", rx, function(d) transform(d, x = Days + 1e8 * sd(Days)))
robust_case("y_near_2_62", ri,
            function(d) transform(d, Reaction = 2^62 + 1024 * round(Reaction)))
robust_case("y_near_2_62_shifted", ri,
            function(d) transform(d, Reaction = 1024 * round(Reaction)))
robust_case("weights_4", ri, function(d) d, weights = rep(4, 180))
robust_case("weights_1e-300", ri, function(d) d, weights = rep(1e-300, 180))
robust_case("weights_1e300", ri, function(d) d, weights = rep(1e300, 180))
