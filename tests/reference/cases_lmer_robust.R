# Golden references for cluster-robust covariances of lmer fixed effects: clubSandwich's
# vcovCR() and coef_test(test = "Satterthwaite") on lme4 fits, one JSON per case in
# tests/reference/econ/lmer_robust_<case>.json. Sourced by tests/reference/make_reference.R
# (which defines the ref_* helpers); run from the repository root:
#
#   Rscript tests/reference/make_reference.R lmer_robust
#
# clubSandwich's working model for an lmerMod (vcovCR.lmerMod, target = NULL, so
# inverse_var = TRUE): per cluster V_j = Z_j Lambda Lambda' Z_j' + I (sigma^2 cancels),
# W_j = V_j^-1, target Theta_j = V_j, bread (X' W X)^-1 from lme4's vcov(); residuals
# y - X beta. It refuses prior weights ("Models with prior weights are not currently
# supported"), so there is no weighted case; its residuals ignore an offset, so there is no
# offset case either.
#
# Per case, the JSON keys are:
#   case, dataset (bundled name) or data_file, formula, reml, cluster (column name),
#   versions {R, lme4, Matrix, clubSandwich}, theta, fixef_names, beta, sigma, vcov_model
#   (lme4's vcov, p x p rows), nobs, n_clusters, rows (0-based rows of the data used),
#   types {CR0, CR1, CR1p, CR1S, CR2, CR3, CR4: {vcov (p x p rows), se, tstat, df_satt,
#   p_satt}} where df_satt and p_satt are coef_test(fit, vcov, test = "Satterthwaite"),
#   and extra keys noted at a case.

suppressPackageStartupMessages({
  library(lme4)
  library(clubSandwich)
})

lmer_robust_dir <- file.path("tests", "reference", "econ")
lmer_robust_versions <- ref_versions(c("lme4", "Matrix", "clubSandwich"))
lmer_robust_types <- c("CR0", "CR1", "CR1p", "CR1S", "CR2", "CR3", "CR4")

lmer_robust_case <- function(case, formula, data, cluster, dataset = NULL, data_file = NULL,
                             reml = TRUE, extra = NULL) {
  if (!ref_wanted(case, "lmer_robust")) return(invisible(NULL))
  fit <- lmer(as.formula(formula), data = data, REML = reml)
  mf <- model.frame(fit)
  rows <- as.integer(rownames(mf)) - 1L
  cl <- data[[cluster]][rows + 1L]
  types <- list()
  for (tp in lmer_robust_types) {
    v <- vcovCR(fit, cluster = cl, type = tp)
    ct <- coef_test(fit, vcov = v, test = "Satterthwaite")
    types[[tp]] <- list(
      vcov = ref_rows(as.matrix(v)),
      se = I(unname(sqrt(diag(as.matrix(v))))),
      tstat = I(unname(ct$tstat)),
      df_satt = I(unname(ct$df_Satt)),
      p_satt = I(unname(ct$p_Satt))
    )
  }
  out <- list(
    case = paste0("lmer_robust_", case),
    dataset = dataset,
    data_file = data_file,
    formula = formula,
    reml = reml,
    cluster = cluster,
    versions = lmer_robust_versions,
    theta = I(unname(getME(fit, "theta"))),
    fixef_names = I(names(fixef(fit))),
    beta = I(unname(fixef(fit))),
    sigma = sigma(fit),
    vcov_model = ref_rows(as.matrix(vcov(fit))),
    nobs = nobs(fit),
    n_clusters = nlevels(droplevels(as.factor(cl))),
    rows = I(rows),
    types = types
  )
  out <- c(Filter(Negate(is.null), out), extra)
  ref_write_json(out, file.path(lmer_robust_dir, paste0("lmer_robust_", case, ".json")))
  invisible(fit)
}

local({
  hsb <- ref_read_dataset("hsb")
  sleepstudy <- ref_read_dataset("sleepstudy")
  pastes <- ref_read_dataset("pastes")
  ss_na_file <- file.path("tests", "reference", "data", "sleepstudy_na.csv")
  ss_na <- ref_read_data_file(ss_na_file)

  lmer_robust_case("hsb", "mathach ~ ses + meanses + (1 | school)", hsb, "school",
                   dataset = "hsb")
  lmer_robust_case("hsb_slope", "mathach ~ ses + meanses + (1 + ses | school)", hsb,
                   "school", dataset = "hsb")
  lmer_robust_case("hsb_ml", "mathach ~ ses + meanses + (1 | school)", hsb, "school",
                   dataset = "hsb", reml = FALSE)
  lmer_robust_case("sleepstudy", "Reaction ~ Days + (Days | Subject)", sleepstudy,
                   "Subject", dataset = "sleepstudy")
  lmer_robust_case("sleepstudy_na", "Reaction ~ Days + (Days | Subject)", ss_na,
                   "Subject", data_file = ss_na_file)
  # Two nested random-effect terms, clustered at the outer one.
  lmer_robust_case("pastes", "strength ~ 1 + (1 | batch/cask)", pastes, "batch",
                   dataset = "pastes")
  # A cluster above the only random-effect grouping (samples nested in batches).
  lmer_robust_case("pastes_coarse", "strength ~ 1 + (1 | sample)", pastes, "batch",
                   dataset = "pastes")

  # The school mean of ses computed here with ave() (for the formula function
  # cvar(ses, school)); ses_mean lists it per school in the order of hsb$school's levels.
  hsb_c <- hsb
  hsb_c$ses_mean <- ave(hsb_c$ses, hsb_c$school)
  by_school <- tapply(hsb_c$ses_mean, hsb_c$school, function(x) x[1])
  lmer_robust_case("hsb_cvar", "mathach ~ ses + ses_mean + (1 | school)", hsb_c, "school",
                   dataset = "hsb",
                   extra = list(
                     note = "ses_mean <- ave(ses, school): equals cvar(ses, school)",
                     cvar_formula = "mathach ~ ses + cvar(ses, school) + (1 | school)",
                     ses_mean_levels = I(names(by_school)),
                     ses_mean = I(unname(as.double(by_school)))
                   ))
})
