# Golden references for contextual effects: group means cvar(x, g) and deviations dvar(x, g) in
# lmer, lm (with sandwich covariances) and plm formulas, and predictions for new data that use the
# training means. One JSON per case in tests/reference/econ/contextual_*.json.
#
# Sourced by tests/reference/make_reference.R after cases_lmm.R (it reuses lmm_case and the ref_*
# helpers); run from the repository root:
#     Rscript tests/reference/make_reference.R contextual
#
# In R the group mean is ave(x, g), computed on the data given to the fit (here complete, so the
# rows used); cvar and dvar below are exactly that, so lme4 and lm name the coefficients as
# multilevel does ("cvar(ses, school)"). plm and the prediction case use explicit columns made
# the same way, and the JSON records the package's coefficient names.

cvar <- function(x, g) ave(x, g)
dvar <- function(x, g) x - ave(x, g)

local({
  suppressPackageStartupMessages({
    library(lme4)
    library(sandwich)
    library(plm)
  })
  group <- "contextual"
  out_dir <- file.path("tests", "reference", "econ")
  versions <- ref_versions(c("lme4", "Matrix", "sandwich", "plm"))
  hsb <- ref_read_dataset("hsb")
  stopifnot(!anyNA(hsb$ses), !anyNA(hsb$school))
  gr <- ref_read_dataset("grunfeld")

  # ------------------------------------------------------------------------------ lmer
  f_cvar <- "mathach ~ ses + cvar(ses, school) + (1 | school)"
  f_dvar <- "mathach ~ dvar(ses, school) + cvar(ses, school) + (1 + dvar(ses, school) | school)"
  lmm_case("contextual_hsb_cvar_reml", f_cvar, hsb, dataset = "hsb", group = group,
           out_dir = out_dir, note = "cvar(ses, school) = ave(ses, school)")
  lmm_case("contextual_hsb_dvar_reml", f_dvar, hsb, dataset = "hsb", group = group,
           out_dir = out_dir,
           note = "dvar(ses, school) = ses - ave(ses, school): the within-between model")

  # ------------------------------------------------------------------------------ lm
  if (ref_wanted("contextual_ols_hsb", group)) {
    fit <- lm(mathach ~ ses + cvar(ses, school), data = hsb)
    stopifnot(identical(names(coef(fit)), c("(Intercept)", "ses", "cvar(ses, school)")))
    V <- list(iid = vcov(fit), HC1 = vcovHC(fit, type = "HC1"),
              CR1 = vcovCL(fit, cluster = hsb$school))
    ref_write_json(list(
      case = "contextual_ols_hsb",
      dataset = "hsb",
      formula = "mathach ~ ses + cvar(ses, school)",
      cluster = "school",
      versions = versions,
      names = I(names(coef(fit))),
      coef = I(unname(coef(fit))),
      sigma = summary(fit)$sigma,
      nobs = nobs(fit),
      vcov = lapply(V, ref_rows),
      se = lapply(V, function(v) I(unname(sqrt(diag(v))))),
      notes = list(CR1 = "sandwich::vcovCL default: G/(G-1) (n-1)/(n-k), Stata's vce(cluster)")
    ), file.path(out_dir, "contextual_ols_hsb.json"))
  }

  # ------------------------------------------------------------------------------ plm
  if (ref_wanted("contextual_panel_grunfeld", group)) {
    g2 <- gr
    g2$value_m <- ave(g2$value, g2$firm)
    g2$capital_m <- ave(g2$capital, g2$firm)
    py_names <- c("(Intercept)", "value", "capital", "cvar(value, firm)", "cvar(capital, firm)")
    idx <- c("firm", "year")
    out <- list(
      case = "contextual_panel_grunfeld",
      dataset = "grunfeld",
      formula = "inv ~ value + capital + cvar(value, firm) + cvar(capital, firm)",
      entity = "firm", time = "year",
      versions = versions,
      names = I(py_names),
      note = paste("plm on explicit columns value_m = ave(value, firm), capital_m =",
                   "ave(capital, firm) (Mundlak); names are multilevel's")
    )
    for (model in c("pooling", "random")) {
      fit <- plm(inv ~ value + capital + value_m + capital_m, data = g2, model = model,
                 index = idx)
      stopifnot(length(coef(fit)) == length(py_names))
      r <- list(coef = I(unname(coef(fit))), vcov = ref_rows(vcov(fit)),
                se = I(unname(sqrt(diag(vcov(fit))))), nobs = nobs(fit),
                vcov_CR1 = ref_rows(vcovHC(fit, method = "arellano", type = "sss",
                                           cluster = "group")))
      if (model == "random") {
        ec <- ercomp(fit)
        r$sigma2_idios <- unname(ec$sigma2["idios"])
        r$sigma2_id <- unname(ec$sigma2["id"])
        r$theta <- unname(ec$theta)
      }
      out[[if (model == "pooling") "pooled" else model]] <- r
    }
    ref_write_json(out, file.path(out_dir, "contextual_panel_grunfeld.json"))
  }

  # ------------------------------------------------------------------------------ predict
  if (ref_wanted("contextual_predict_hsb", group)) {
    h2 <- hsb
    h2$ses_m <- ave(h2$ses, h2$school)
    h2$ses_d <- h2$ses - h2$ses_m
    env <- new.env(parent = globalenv())
    env$h2 <- h2
    fits <- list(
      cvar = eval(quote(lmer(mathach ~ ses + ses_m + (1 | school), data = h2)), env),
      dvar = eval(quote(lmer(mathach ~ ses_d + ses_m + (1 + ses_d | school), data = h2)), env)
    )
    newdata <- data.frame(
      school = c("1224", "1224", "1288", "9586", "2305", "9999", "9999", "8888"),
      ses = c(-1, 0.5, 0, 1.2, -0.3, 0.2, 0.6, -0.7),
      stringsAsFactors = FALSE
    )
    known <- newdata$school %in% levels(hsb$school)
    train_m <- tapply(h2$ses, h2$school, mean)
    # Training means for known schools; a new school's own mean in newdata (multilevel's rule
    # with allow_new_levels = TRUE).
    own_m <- ave(newdata$ses, newdata$school)
    newdata$ses_m <- ifelse(known, unname(train_m[newdata$school]), own_m)
    newdata$ses_d <- newdata$ses - newdata$ses_m
    res <- lapply(names(fits), function(nm) {
      fit <- fits[[nm]]
      p_known <- rep(NA_real_, nrow(newdata))
      p_known[known] <- predict(fit, newdata = newdata[known, ], re.form = NULL)
      list(
        formula = if (nm == "cvar") f_cvar else f_dvar,
        r_formula = paste(deparse(formula(fit)), collapse = ""),
        theta = I(unname(getME(fit, "theta"))),
        beta = I(unname(fixef(fit))),
        predict_re_known = I(unname(p_known)),
        predict_re = I(unname(predict(fit, newdata = newdata, re.form = NULL,
                                      allow.new.levels = TRUE))),
        predict_fixed = I(unname(predict(fit, newdata = newdata, re.form = NA)))
      )
    })
    names(res) <- names(fits)
    ref_write_json(list(
      case = "contextual_predict_hsb",
      dataset = "hsb",
      versions = versions,
      newdata = list(school = I(newdata$school), ses = I(newdata$ses)),
      new_levels = I(!known),
      ses_mean = I(newdata$ses_m),
      fits = res,
      notes = list(
        ses_mean = "training mean of ses for known schools; the new data's own mean for new schools",
        predict_re_known = "re.form = NULL, known schools only (null for new schools)",
        predict_re = "re.form = NULL, allow.new.levels = TRUE (new schools: b = 0, own mean)",
        predict_fixed = "re.form = NA, allow.new.levels = TRUE"
      )
    ), file.path(out_dir, "contextual_predict_hsb.json"))
  }
})
