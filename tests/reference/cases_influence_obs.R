# Golden references for leave-one-observation-out influence diagnostics of lmer fits
# (multilevel.inference.influence with level = 1, HLMdiag's level = 1; lme4's
# influence(fit) without groups, which deletes each case), one JSON per case in
# tests/reference/influence/obs_<case>.json. Sourced by tests/reference/make_reference.R;
# run from the repository root:
#
#   Rscript tests/reference/make_reference.R influence_obs
#
# The refits and the HLMdiag diagnostics are those of cases_influence.R (whose helpers this
# file uses: influence_polished, influence_varcomp), with each row of the data deleted in turn
# instead of each level of a grouping factor. The JSON has the keys of cases_influence.R
# (levels are the 0-based row positions, as strings) plus, from lme4's own influence.merMod
# (lme4 1.1-31: update() refits from the full fit's theta, not polished):
# lme4_beta_delete (rows: fixed.effects[-case]), lme4_varcomp_delete (rows: var.cov.comps[-case],
# lme4's order: sigma^2 then each term's lower triangle), lme4_cooksd
# (cooks.distance(influence(fit)): (n - p) / (n p) dfbeta' V^-1 dfbeta, n the number of cases)
# and lme4_seconds (its wall time).

suppressPackageStartupMessages({
  library(lme4)
  library(Matrix)
})

if (!exists("influence_polished")) {
  # define the helpers without running cases_influence.R's cases
  ref_args_saved <- ref_args
  ref_args <- "influence_obs"
  source(file.path("tests", "reference", "cases_influence.R"))
  ref_args <- ref_args_saved
}

influence_obs_case <- function(case, formula, data, dataset, reml = TRUE) {
  if (!ref_wanted(case, "influence_obs")) return(invisible(NULL))
  # REML as a literal in the call: influence.merMod re-evaluates the call in its own frame
  fit0 <- eval(bquote(lmer(.(as.formula(formula)), data = data, REML = .(reml))))
  fit <- influence_polished(formula, data, reml, fit0)
  b <- fixef(fit)
  V <- as.matrix(vcov(fit))
  Vinv <- solve(V)
  vc <- influence_varcomp(fit)
  p <- length(b)
  n <- nrow(data)
  rows <- lapply(seq_len(n), function(i) {
    sub <- data[-i, ]
    start <- suppressMessages(suppressWarnings(update(fit0, data = sub)))
    m <- influence_polished(formula, sub, reml, start)
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
  t0 <- proc.time()[["elapsed"]]
  inf <- suppressWarnings(influence(fit0))
  lme4_seconds <- proc.time()[["elapsed"]] - t0
  pick <- function(key) lapply(rows, function(r) I(unname(as.double(r[[key]]))))
  out <- list(
    case = case, dataset = dataset, formula = formula, reml = reml, level = 1L,
    versions = influence_versions,
    fixef_names = I(names(b)), beta = I(unname(b)), vcov = ref_rows(V),
    varcomp_names = I(names(vc)), varcomp = I(unname(vc)),
    levels = I(as.character(seq_len(n) - 1L)),
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
    lme4_beta_delete = ref_rows(inf[["fixed.effects[-case]"]]),
    lme4_varcomp_delete = ref_rows(inf[["var.cov.comps[-case]"]]),
    lme4_cooksd = I(unname(cooks.distance(inf))),
    lme4_seconds = lme4_seconds
  )
  ref_write_json(out, file.path(influence_dir, paste0("obs_", case, ".json")))
}

influence_obs_sleep <- ref_read_dataset("sleepstudy")
influence_obs_case("sleepstudy_reml", "Reaction ~ Days + (Days | Subject)",
                   influence_obs_sleep, "sleepstudy")
influence_obs_case("sleepstudy_intercept_ml", "Reaction ~ Days + (1 | Subject)",
                   influence_obs_sleep, "sleepstudy", reml = FALSE)
