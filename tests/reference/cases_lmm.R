# Golden references for linear mixed models from lme4, one JSON per case in
# tests/reference/lmm/<case>.json. Sourced by tests/reference/make_reference.R (which defines the
# ref_* helpers); run that, from the repository root.
#
# Per fit (lmm_case), the JSON keys are:
#   case, dataset (bundled name) or data_file (repo-relative CSV), formula, reml, weights,
#   offset (column names or null), versions {R, lme4, Matrix},
#   theta, theta_names, lower (getME "lower"), terms [{group, columns, n_levels, diagonal}] in
#   theta order (lme4's term order), fixef_names, beta, vcov (p x p, nested rows), se, sigma,
#   objective (REML criterion for REML fits, ML deviance otherwise: what the optimiser minimised),
#   loglik, aic, bic, df, nobs, ngroups {grp: n}, n_dropped, rows (0-based rows of the data file
#   used in the fit), devcomp {ldL2, ldRX2, wrss, ussq, pwrss, drsum, REML, dev, sigmaML,
#   sigmaREML} (lme4's devcomp$cmp, NA -> null), varcorr [{group, var1, var2, vcov, sdcor}],
#   ranef {grp: {levels, columns, values (levels x q), condvar (levels x q x q; entries between
#   two different terms of the same grouping factor, which lme4 does not compute, are null)}},
#   fitted (includes the offset), resid (response: y - fitted), resid_pearson (sqrt(w) * resid),
#   singular, optimizer {name, feval, conv, messages}, optimizer_evals,
#   objective_at_theta (lme4's devfun at theta), objective_at_other_theta [{label, theta,
#   objective}] at 0.5 x theta, 1.5 x theta and lme4's start (1 on the diagonals, 0 off),
#   summary_text (print(summary(fit)) with default digits).

suppressPackageStartupMessages({
  library(lme4)
})

lmm_dir <- file.path("tests", "reference", "lmm")
dir.create(lmm_dir, showWarnings = FALSE, recursive = TRUE)
lmm_versions <- ref_versions(c("lme4", "Matrix"))

# Fit `formula` by lmer on `data`, whose name in the call (and in summary_text) is data_name.
lmm_fit <- function(formula, data, data_name, reml = TRUE, weights = NULL, offset = NULL) {
  env <- new.env(parent = globalenv())
  assign(data_name, data, envir = env)
  call <- bquote(lmer(.(as.formula(formula, env = env)), data = .(as.name(data_name)),
                      REML = .(reml)))
  if (!is.null(weights)) call$weights <- as.name(weights)
  if (!is.null(offset)) call$offset <- as.name(offset)
  eval(call, env)
}

lmm_ranef <- function(fit) {
  re <- ranef(fit, condVar = TRUE)
  out <- list()
  for (g in names(re)) {
    d <- re[[g]]
    q <- ncol(d)
    n <- nrow(d)
    pv <- attr(d, "postVar")
    cv <- array(NA_real_, c(q, q, n))
    if (is.list(pv)) {
      # one array per term of this grouping factor (e.g. (Days || Subject)): block diagonal
      j <- 0
      for (blk in pv) {
        k <- dim(blk)[1]
        cv[j + seq_len(k), j + seq_len(k), ] <- blk
        j <- j + k
      }
      stopifnot(j == q)
    } else {
      cv[, , ] <- pv
    }
    out[[g]] <- list(
      levels = I(rownames(d)),
      columns = I(colnames(d)),
      values = ref_rows(as.matrix(d)),
      condvar = lapply(seq_len(n), function(i) ref_rows(matrix(cv[, , i], q, q)))
    )
  }
  out
}

lmm_terms <- function(fit) {
  cnms <- getME(fit, "cnms")
  flist <- getME(fit, "flist")
  lapply(seq_along(cnms), function(i) {
    g <- names(cnms)[i]
    list(group = g, columns = I(cnms[[i]]), n_levels = nlevels(flist[[g]]),
         q = length(cnms[[i]]))
  })
}

# group: the command-line group that selects the case; out_dir: where its JSON goes (other case
# files, e.g. cases_contextual.R, reuse lmm_case with their own group and directory).
lmm_case <- function(case, formula, data, dataset = NULL, data_file = NULL, reml = TRUE,
                     weights = NULL, offset = NULL, note = NULL, group = "lmm",
                     out_dir = lmm_dir) {
  if (!ref_wanted(case, group)) return(invisible(NULL))
  data_name <- if (!is.null(dataset)) dataset else sub("\\.csv$", "", basename(data_file))
  fit <- lmm_fit(formula, data, data_name, reml = reml, weights = weights, offset = offset)
  stopifnot(isREML(fit) == reml)

  theta <- getME(fit, "theta")
  beta <- fixef(fit)
  V <- as.matrix(vcov(fit))
  ll <- logLik(fit)
  cmp <- fit@devcomp$cmp
  objective <- unname(if (reml) cmp[["REML"]] else cmp[["dev"]])
  mf <- model.frame(fit)
  rows <- as.integer(rownames(mf)) - 1L
  ngroups <- as.list(ngrps(fit))
  vc <- as.data.frame(VarCorr(fit))
  varcorr <- lapply(seq_len(nrow(vc)), function(i) list(
    group = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i],
    vcov = vc$vcov[i], sdcor = vc$sdcor[i]))
  summary_text <- paste(capture.output(print(summary(fit))), collapse = "\n")
  oi <- fit@optinfo

  out <- list(
    case = case,
    dataset = dataset,
    data_file = data_file,
    formula = formula,
    reml = reml,
    weights = if (is.null(weights)) NA_character_ else weights,
    offset = if (is.null(offset)) NA_character_ else offset,
    note = note,
    versions = lmm_versions,
    theta = I(unname(theta)),
    theta_names = I(names(theta)),
    lower = I(getME(fit, "lower")),
    terms = lmm_terms(fit),
    fixef_names = I(names(beta)),
    beta = I(unname(beta)),
    vcov = ref_rows(V),
    se = I(unname(sqrt(diag(V)))),
    sigma = sigma(fit),
    objective = objective,
    loglik = as.numeric(ll),
    aic = AIC(fit),
    bic = BIC(fit),
    df = as.integer(attr(ll, "df")),
    nobs = nobs(fit),
    ngroups = ngroups,
    n_dropped = nrow(data) - nobs(fit),
    rows = I(rows),
    devcomp = as.list(cmp),
    varcorr = varcorr,
    ranef = lmm_ranef(fit),
    fitted = I(unname(fitted(fit))),
    resid = I(unname(residuals(fit, type = "response"))),
    resid_pearson = I(unname(residuals(fit, type = "pearson"))),
    singular = isSingular(fit),
    optimizer = list(name = oi$optimizer, feval = oi$feval, conv = oi$conv$opt,
                     messages = I(as.character(unlist(oi$conv$lme4$messages)))),
    optimizer_evals = oi$feval
  )

  # Last, because evaluating the deviance function changes the fit's internal state.
  devfun <- getME(fit, "devfun")
  at <- devfun(theta)
  stopifnot(abs(at - objective) <= 1e-10 * abs(objective))
  lower <- getME(fit, "lower")
  others <- list(
    list(label = "0.5 x theta", theta = 0.5 * unname(theta)),
    list(label = "1.5 x theta", theta = 1.5 * unname(theta)),
    list(label = "start", theta = ifelse(lower == 0, 1, 0))
  )
  out$objective_at_theta <- at
  out$objective_at_other_theta <- lapply(others, function(o) {
    list(label = o$label, theta = I(o$theta), objective = devfun(o$theta))
  })
  out$summary_text <- summary_text
  out <- Filter(Negate(is.null), out)  # drops dataset or data_file, and note when absent
  ref_write_json(out, file.path(out_dir, paste0(case, ".json")))
  invisible(fit)
}

# ------------------------------------------------------------------------------ data

sleepstudy_b <- ref_read_dataset("sleepstudy")
dyestuff_b <- ref_read_dataset("dyestuff")
penicillin_b <- ref_read_dataset("penicillin")
pastes_b <- ref_read_dataset("pastes")
hsb_b <- ref_read_dataset("hsb")

# Prior weights: w = 1 + (Days %% 3) / 2, i.e. 1, 1.5, 2.
ss_w <- sleepstudy_b
ss_w$w <- 1 + (ss_w$Days %% 3) / 2
ss_w_path <- ref_write_data_file(ss_w, "sleepstudy_weights",
  "sleepstudy (bundled) with prior weights w = 1 + (Days %% 3) / 2")
ss_w <- ref_read_data_file(ss_w_path)

# Offset: off = 2.5 * (row %% 7) - 7.5 (row = 1-based row number), not collinear with Days.
ss_o <- sleepstudy_b
ss_o$off <- 2.5 * (seq_len(nrow(ss_o)) %% 7) - 7.5
ss_o_path <- ref_write_data_file(ss_o, "sleepstudy_offset",
  "sleepstudy (bundled) with offset off = 2.5 * (row %% 7) - 7.5, row 1-based")
ss_o <- ref_read_data_file(ss_o_path)

# Unbalanced with missing values: drop rows 11, 22, ..., 176 (1-based) and the whole of day 9
# for subject 372; then NA in Reaction at original rows 5, 37, 100 and in Days at 14, 78, 150.
ss_na <- sleepstudy_b
ss_na$Reaction[c(5, 37, 100)] <- NA
ss_na$Days[c(14, 78, 150)] <- NA
drop <- seq(11, nrow(ss_na), by = 11)
drop <- union(drop, which(ss_na$Subject == "372" & ss_na$Days %in% 9))
ss_na <- ss_na[-drop, ]
ss_na_path <- ref_write_data_file(ss_na, "sleepstudy_na",
  paste("sleepstudy (bundled) without rows 11, 22, ..., 176 and subject 372's day 9,",
        "with NA in Reaction (original rows 5, 37, 100) and Days (14, 78, 150)"))
ss_na <- ref_read_data_file(ss_na_path)

# ------------------------------------------------------------------------------ fits

for (reml in c(TRUE, FALSE)) {
  sfx <- if (reml) "_reml" else "_ml"
  lmm_case(paste0("sleepstudy_slopes", sfx), "Reaction ~ Days + (Days | Subject)",
           sleepstudy_b, dataset = "sleepstudy", reml = reml)
  lmm_case(paste0("sleepstudy_uncorr", sfx), "Reaction ~ Days + (Days || Subject)",
           sleepstudy_b, dataset = "sleepstudy", reml = reml)
  lmm_case(paste0("dyestuff", sfx), "Yield ~ 1 + (1 | Batch)",
           dyestuff_b, dataset = "dyestuff", reml = reml)
}
lmm_case("penicillin_reml", "diameter ~ 1 + (1 | plate) + (1 | sample)",
         penicillin_b, dataset = "penicillin")
lmm_case("pastes_reml", "strength ~ 1 + (1 | batch/cask)", pastes_b, dataset = "pastes",
         note = "lme4 expands batch/cask to (1 | cask:batch) + (1 | batch); cask:batch levels are labelled cask:batch, e.g. 'a:A'")
lmm_case("hsb_reml", "mathach ~ ses * sector + (1 + ses | school)", hsb_b, dataset = "hsb",
         note = "lme4 (nloptwrap) warns: failed to converge, max|grad| about 0.006 (tol 0.002); the ses slope variance is nearly 0")
lmm_case("sleepstudy_weights_reml", "Reaction ~ Days + (Days | Subject)", ss_w,
         data_file = ss_w_path, weights = "w")
lmm_case("sleepstudy_na_ml", "Reaction ~ Days + (Days | Subject)", ss_na,
         data_file = ss_na_path, reml = FALSE, note = "na.action = na.omit (lme4's default)")
lmm_case("sleepstudy_offset_reml", "Reaction ~ Days + (1 | Subject)", ss_o,
         data_file = ss_o_path, offset = "off")

# ------------------------------------------------------------------------------ anova

if (ref_wanted("anova_sleepstudy")) {
  env <- new.env(parent = globalenv())
  env$sleepstudy <- sleepstudy_b
  fm0 <- eval(quote(lmer(Reaction ~ Days + (1 | Subject), data = sleepstudy, REML = TRUE)), env)
  fm1 <- eval(quote(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = TRUE)), env)
  tab <- suppressMessages(anova(fm0, fm1))
  cols <- c("npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)")
  stopifnot(all(cols %in% names(tab)))
  rows <- lapply(seq_len(nrow(tab)), function(i) {
    r <- list(model = rownames(tab)[i])
    for (cn in cols) r[[cn]] <- unname(tab[[cn]][i])
    r
  })
  ml <- list(fm0 = refitML(fm0), fm1 = refitML(fm1))
  ref_write_json(list(
    case = "anova_sleepstudy",
    dataset = "sleepstudy",
    models = list(
      list(name = "fm0", formula = "Reaction ~ Days + (1 | Subject)", reml = TRUE),
      list(name = "fm1", formula = "Reaction ~ Days + (Days | Subject)", reml = TRUE)
    ),
    refit_ml = TRUE,
    note = "both models fitted with REML; anova() refits them with ML (lme4's default refit = TRUE)",
    versions = lmm_versions,
    columns = I(cols),
    table = rows,
    ml_theta = lapply(ml, function(m) I(unname(getME(m, "theta")))),
    ml_deviance = lapply(ml, function(m) unname(deviance(m))),
    summary_text = paste(capture.output(print(tab)), collapse = "\n")
  ), file.path(lmm_dir, "anova_sleepstudy.json"))
}

# ------------------------------------------------------------------------------ predict

if (ref_wanted("predict_sleepstudy")) {
  env <- new.env(parent = globalenv())
  env$sleepstudy <- sleepstudy_b
  fm1 <- eval(quote(lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = TRUE)), env)
  newdata <- data.frame(
    Subject = c("308", "308", "309", "372", "350", "999", "999"),
    Days = c(0, 4.5, 9, 12, 2, 0, 5),
    stringsAsFactors = FALSE
  )
  known <- newdata$Subject %in% levels(sleepstudy_b$Subject)
  p_re <- predict(fm1, newdata = newdata, re.form = NULL, allow.new.levels = TRUE)
  p_fixed <- predict(fm1, newdata = newdata, re.form = NA)
  p_known <- rep(NA_real_, nrow(newdata))
  p_known[known] <- predict(fm1, newdata = newdata[known, ], re.form = NULL)
  err <- tryCatch({
    predict(fm1, newdata = newdata, re.form = NULL)
    NULL
  }, error = function(e) conditionMessage(e))
  stopifnot(!is.null(err))
  ref_write_json(list(
    case = "predict_sleepstudy",
    dataset = "sleepstudy",
    fit_case = "sleepstudy_slopes_reml",
    formula = "Reaction ~ Days + (Days | Subject)",
    reml = TRUE,
    versions = lmm_versions,
    theta = I(unname(getME(fm1, "theta"))),
    beta = I(unname(fixef(fm1))),
    newdata = list(Subject = I(newdata$Subject), Days = I(newdata$Days)),
    new_levels = I(!known),
    predict_re = I(unname(p_re)),
    predict_fixed = I(unname(p_fixed)),
    predict_re_known = I(unname(p_known)),
    notes = list(
      predict_re = "re.form = NULL, allow.new.levels = TRUE (new levels get b = 0)",
      predict_fixed = "re.form = NA (fixed effects only)",
      predict_re_known = "re.form = NULL, allow.new.levels = FALSE, rows of known levels only (null for new levels)",
      error_new_levels = "re.form = NULL without allow.new.levels on the full newdata: lme4's error"
    ),
    error_new_levels = err
  ), file.path(lmm_dir, "predict_sleepstudy.json"))
}
