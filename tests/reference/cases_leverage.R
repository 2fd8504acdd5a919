# Golden references for observation-level leverage and Cook's distance of lmer and glmer fits
# (multilevel.inference.leverage: fit.hatvalues(), fit.cooks_distance(), the .hat and .cooksd
# columns of fit.augment()), one JSON per case in tests/reference/leverage/<case>.json.
# Sourced by tests/reference/make_reference.R (which defines the ref_* helpers); run from the
# repository root:
#
#   Rscript tests/reference/make_reference.R leverage
#
# What lme4 computes (lme4 1.1-31, R/lmer.R hatvalues.merMod and R/methods.R
# cooks.distance.merMod; broom.mixed's augment.merMod takes .hat and .cooksd from these two):
#
#   hat_i    = w_i a_i' M^-1 a_i,  a_i = (Lambda' z_i, x_i),  w = the prior weights,
#              M = [Lambda'Z'WZ Lambda + I, Lambda'Z'WX; X'WZ Lambda, X'WX] with W the weights
#              of the decomposition: the prior weights for lmer, the squared sqrtXwt of the
#              last PIRLS step for glmer (lme4 warns "the hat matrix may not make sense for
#              GLMMs": with binomial trials as prior weights the values exceed 1 on cbpp)
#   cooksd_i = (r_i / (1 - hat_i))^2 hat_i / (sigma^2 p),  r the Pearson residuals, p the rank
#              of X, sigma lme4's sigma() (1 for binomial and Poisson)
#
# Per case the JSON keys are: case, kind ("lmer" or "glmer"), dataset or data_file, formula,
# family (glmer), reml (lmer), weights (column name or null), versions, fixef_names, theta,
# beta, sigma, sqrtXwt (per row: sqrt of the weights W of lme4's decomposition, pp$Xwts for
# glmer, sqrt(prior weights) for lmer), prior_weights, fitted (mu), resid_pearson, hat,
# cooksd, and broom_hat, broom_cooksd (broom.mixed's augment columns, which equal hat and
# cooksd).

suppressPackageStartupMessages({
  library(lme4)
  library(broom.mixed)
})

leverage_dir <- file.path("tests", "reference", "leverage")
leverage_versions <- ref_versions(c("lme4", "Matrix", "broom.mixed"))

leverage_case <- function(case, kind, formula, data, dataset = NULL, data_file = NULL,
                          family = NULL, reml = TRUE, weights = NULL) {
  if (!ref_wanted(case, "leverage")) return(invisible(NULL))
  args <- list(as.formula(formula), data = data)
  if (!is.null(weights)) args$weights <- data[[weights]]
  fit <- if (kind == "lmer") {
    do.call(lmer, c(args, list(REML = reml)))
  } else {
    do.call(glmer, c(args, list(family = eval(parse(text = family)))))
  }
  hat <- suppressWarnings(hatvalues(fit))
  cooksd <- suppressWarnings(cooks.distance(fit))
  aug <- suppressWarnings(augment(fit))
  stopifnot(isTRUE(all.equal(unname(aug$.hat), unname(hat), tolerance = 1e-14)))
  sqrtXwt <- if (kind == "glmer") fit@pp$Xwts else sqrt(weights(fit, type = "prior"))
  out <- list(
    case = case, kind = kind, dataset = dataset, data_file = data_file, formula = formula,
    family = family, reml = if (kind == "lmer") reml else NULL, weights = weights,
    versions = leverage_versions,
    fixef_names = I(names(fixef(fit))), theta = I(unname(getME(fit, "theta"))),
    beta = I(unname(fixef(fit))), sigma = sigma(fit),
    sqrtXwt = unname(as.double(sqrtXwt)),
    prior_weights = unname(weights(fit, type = "prior")),
    fitted = unname(fitted(fit)), resid_pearson = unname(residuals(fit, type = "pearson")),
    hat = unname(hat), cooksd = unname(cooksd),
    broom_hat = unname(aug$.hat), broom_cooksd = unname(aug$.cooksd)
  )
  ref_write_json(out, file.path(leverage_dir, paste0(case, ".json")))
}

cbpp_l <- ref_read_dataset("cbpp")
sleep_l <- ref_read_dataset("sleepstudy")
sleep_w <- sleep_l
sleep_w$w <- 1 + sleep_w$Days / 10
penicillin_l <- ref_read_dataset("penicillin")
grouse_path <- file.path("tests", "reference", "data", "grouseticks.csv")
poisson_path <- file.path("tests", "reference", "data", "sim_poisson_offset.csv")

leverage_case("glmer_cbpp", "glmer", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
              cbpp_l, dataset = "cbpp", family = "binomial")
leverage_case("glmer_grouseticks", "glmer",
              "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
              ref_read_data_file(grouse_path), data_file = grouse_path, family = "poisson")
leverage_case("glmer_poisson_offset", "glmer", "y ~ x + offset(log(t)) + (1 | g)",
              ref_read_data_file(poisson_path), data_file = poisson_path, family = "poisson")
leverage_case("lmer_sleepstudy", "lmer", "Reaction ~ Days + (Days | Subject)", sleep_l,
              dataset = "sleepstudy")
leverage_case("lmer_sleepstudy_weighted_ml", "lmer", "Reaction ~ Days + (1 | Subject)", sleep_w,
              dataset = "sleepstudy", reml = FALSE, weights = "w")
leverage_case("lmer_penicillin", "lmer", "diameter ~ 1 + (1 | plate) + (1 | sample)",
              penicillin_l, dataset = "penicillin")
