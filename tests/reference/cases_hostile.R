# Golden references for the hostile-input catalogue (issue 15): lme4 fits of unusual but valid
# inputs that multilevel must reproduce -- formula functions (scale, centring, offset() in the
# formula), R-style dotted names, the response repeated on the right, columns named like formula
# functions, constant and zero weights, rows with a missing grouping value, rank-deficient and
# logical/character predictors -- and lm() with zero weights. One JSON per case in
# tests/reference/hostile/<case>.json.
#
# Sourced by tests/reference/make_reference.R (the ref_* helpers); run from the repository root:
#     Rscript tests/reference/make_reference.R hostile

local({
  suppressPackageStartupMessages(library(lme4))
  group <- "hostile"
  out_dir <- file.path("tests", "reference", "hostile")
  versions <- ref_versions(c("lme4", "Matrix"))
  ss <- ref_read_dataset("sleepstudy")

  fit_case <- function(case, formula, data, reml = TRUE, weights = NULL, note = NULL) {
    if (!ref_wanted(case, group)) return(invisible(NULL))
    data$.w <- if (is.null(weights)) 1 else weights
    fit <- suppressWarnings(lmer(as.formula(formula), data = data, REML = reml,
                                 weights = .w))
    cmp <- fit@devcomp$cmp
    ref_write_json(list(
      case = case,
      formula = formula,
      reml = reml,
      note = note,
      versions = versions,
      fixef_names = I(names(fixef(fit))),
      beta = I(unname(fixef(fit))),
      se = I(unname(sqrt(diag(as.matrix(vcov(fit)))))),
      theta = I(unname(getME(fit, "theta"))),
      sigma = sigma(fit),
      objective = unname(if (reml) cmp[["REML"]] else cmp[["dev"]]),
      nobs = nobs(fit),
      n_rows = nrow(data)
    ), file.path(out_dir, paste0(case, ".json")))
  }

  fit_case("scale_days", "Reaction ~ scale(Days) + (1 | Subject)", ss)
  fit_case("scale_days_slope", "Reaction ~ scale(Days) + (scale(Days) | Subject)", ss)
  fit_case("center_days", "Reaction ~ scale(Days, scale = FALSE) + (1 | Subject)", ss,
           note = "multilevel's center(Days)")
  fit_case("offset_log", "Reaction ~ Days + offset(log(Days + 1)) + (1 | Subject)", ss)
  fit_case("offset_log_ml", "Reaction ~ Days + offset(10 * log(Days + 1)) + (Days | Subject)",
           ss, reml = FALSE)
  ss2 <- ss
  ss2$off <- 3 * ss$Days
  fit_case("offset_formula_and_column",
           "Reaction ~ Days + offset(off) + offset(log(Days + 1)) + (1 | Subject)", ss2,
           note = "both offset() terms; multilevel: offset(log(Days + 1)) and offset='off'")
  dotted <- data.frame(my.y = ss$Reaction, my.x = ss$Days, my.g = ss$Subject)
  fit_case("dotted_names", "my.y ~ my.x + (my.x | my.g)", dotted)
  fit_case("response_on_rhs", "Reaction ~ Reaction + Days + (1 | Subject)", ss,
           note = "R drops the response from the right-hand side with a warning")
  named <- data.frame(Reaction = ss$Reaction, I = ss$Days, C = ss$Days^2 / 10,
                      np = as.numeric(ss$Days > 4), Subject = ss$Subject)
  fit_case("columns_I_C_np", "Reaction ~ I + C + np + (1 | Subject)", named)
  fit_case("weights_constant_7", "Reaction ~ Days + (Days | Subject)", ss,
           weights = rep(7, nrow(ss)))
  w0 <- rep(1, nrow(ss))
  w0[c(1, 2, 3, 50, 51)] <- 0
  fit_case("weights_zero_five", "Reaction ~ Days + (1 | Subject)", ss, weights = w0,
           note = "rows 0, 1, 2, 49, 50 (0-based) have weight 0")
  wv <- 1 + (seq_len(nrow(ss)) %% 3)
  fit_case("weights_varying_ml", "Reaction ~ Days + (1 | Subject)", ss, reml = FALSE,
           weights = wv, note = "weights 1 + (row %% 3), rows 1-based")
  na_g <- ss
  na_g$Subject <- as.character(na_g$Subject)
  na_g$Subject[c(5, 40, 41)] <- NA
  na_g$Subject <- factor(na_g$Subject)
  fit_case("missing_group", "Reaction ~ Days + (1 | Subject)", na_g,
           note = "Subject missing at rows 4, 39, 40 (0-based)")
  na_y <- ss
  na_y$Reaction[c(1, 100)] <- NA
  na_y$Days[c(7)] <- NA
  fit_case("missing_y_x", "Reaction ~ Days + (Days | Subject)", na_y,
           note = "Reaction missing at rows 0, 99; Days at row 6 (0-based)")
  rd <- ss
  rd$Days2 <- 2 * rd$Days
  fit_case("rank_deficient", "Reaction ~ Days + Days2 + (1 | Subject)", rd,
           note = "Days2 = 2 Days is dropped")
  lg <- ss
  lg$late <- lg$Days > 4
  lg$shift <- ifelse(lg$Days %% 2 == 0, "even", "odd")
  fit_case("logical_and_character", "Reaction ~ late + shift + (1 | Subject)", lg)

  if (ref_wanted("lm_zero_weights", group)) {
    fit <- lm(Reaction ~ Days, data = ss, weights = w0)
    ref_write_json(list(
      case = "lm_zero_weights", formula = "Reaction ~ Days", versions = versions,
      names = I(names(coef(fit))), coef = I(unname(coef(fit))),
      se = I(unname(sqrt(diag(vcov(fit))))), sigma = summary(fit)$sigma,
      nobs = nobs(fit), df_resid = fit$df.residual,
      note = "rows 0, 1, 2, 49, 50 (0-based) have weight 0"
    ), file.path(out_dir, "lm_zero_weights.json"))
  }
})
