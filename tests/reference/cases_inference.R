# Golden references for inference on linear mixed models, one JSON per case in
# tests/reference/inference/<case>.json. Sourced by tests/reference/make_reference.R (which
# defines the ref_* helpers); run `Rscript tests/reference/make_reference.R inference` from the
# repository root.
#
# Per case the JSON keys are:
#   case, dataset or data_file, formula, reml, versions,
#   fixef_names, beta,
#   satterthwaite {df, se, t, p}         lmerTest 3.1 summary(fit, ddf = "Satterthwaite")
#   kenward_roger {df, se, t, p, vcov}   (REML fits only) lmerTest summary(fit, ddf = "Kenward-Roger") and
#                                        pbkrtest's vcovAdj (the adjusted covariance, nested rows)
#   anova3_satterthwaite, anova3_kenward_roger [{term, sumsq, meansq, numdf, dendf, f, p}]
#                                        lmerTest anova(fit, type = 3, ddf = ...)
#   contrasts [{L (nested rows), satterthwaite {f, numdf, dendf, p}, kenward_roger {...}}]
#                                        lmerTest contest(fit, L, joint = TRUE, ddf = ...)
#   confint_wald {names, lower, upper}   lme4 confint(fit, method = "Wald", oldNames = FALSE)
#                                        (NA for the variance parameters, as lme4)
#   confint_profile {names, lower, upper}  lme4 confint(profile(fit), oldNames = FALSE) (95%)
#   r2 {marginal, conditional}           performance::r2_nakagawa
#   icc {adjusted, unadjusted}           performance::icc
#   lrt_vs_lm {chisq, df, loglik_lm, loglik_lmm}  ML fits only: the LR test against lm()
# and for nlme cases (nlme_case): fixed-effect table of summary(lme) with nlme's DF, and
# intervals(lme) for the fixed effects, the random-effect SDs and correlations and sigma.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(nlme)
  library(performance)
})

inf_dir <- file.path("tests", "reference", "inference")
dir.create(inf_dir, showWarnings = FALSE, recursive = TRUE)
inf_versions <- ref_versions(c("lme4", "Matrix", "lmerTest", "pbkrtest", "nlme", "performance"))

inf_coef <- function(fit, ddf) {
  s <- summary(fit, ddf = ddf)$coefficients
  list(df = unname(s[, "df"]), se = unname(s[, "Std. Error"]), t = unname(s[, "t value"]),
       p = unname(s[, "Pr(>|t|)"]))
}

inf_anova <- function(fit, ddf) {
  a <- anova(fit, type = 3, ddf = ddf)
  lapply(seq_len(nrow(a)), function(i) {
    list(term = rownames(a)[i], sumsq = a[i, "Sum Sq"], meansq = a[i, "Mean Sq"],
         numdf = a[i, "NumDF"], dendf = a[i, "DenDF"], f = a[i, "F value"],
         p = a[i, "Pr(>F)"])
  })
}

inf_contest <- function(fit, L) {
  one <- function(ddf) {
    r <- contest(fit, L, joint = TRUE, ddf = ddf)
    list(f = r[["F value"]], numdf = r[["NumDF"]], dendf = r[["DenDF"]], p = r[["Pr(>F)"]])
  }
  list(L = ref_rows(L), satterthwaite = one("Satterthwaite"), kenward_roger = one("Kenward-Roger"))
}

inf_confint <- function(ci) {
  list(names = I(rownames(ci)), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}

inf_case <- function(case, formula, data, data_ref, reml = TRUE, contrasts = list(),
                     profile = TRUE) {
  if (!ref_wanted(case, "inference")) return(invisible(NULL))
  env <- new.env(parent = globalenv())
  assign("d", data, envir = env)
  fit <- eval(bquote(lmerTest::lmer(.(as.formula(formula, env = env)), data = d,
                                    REML = .(reml))), env)
  out <- c(list(case = case), data_ref,
           list(formula = formula, reml = reml, versions = inf_versions,
                fixef_names = I(names(fixef(fit))), beta = unname(fixef(fit)),
                satterthwaite = inf_coef(fit, "Satterthwaite")))
  out$anova3_satterthwaite <- inf_anova(fit, "Satterthwaite")
  if (reml) {  # Kenward-Roger is defined for REML fits only (pbkrtest, lmerTest)
    kr <- inf_coef(fit, "Kenward-Roger")
    kr$vcov <- ref_rows(as.matrix(vcovAdj(as(fit, "lmerMod"))))
    out$kenward_roger <- kr
    out$anova3_kenward_roger <- inf_anova(fit, "Kenward-Roger")
    out$contrasts <- lapply(contrasts, function(L) inf_contest(fit, L))
  }
  out$confint_wald <- inf_confint(confint(fit, method = "Wald", oldNames = FALSE))
  if (profile) {
    out$confint_profile <- inf_confint(confint(profile(fit), oldNames = FALSE))
  }
  r2 <- performance::r2_nakagawa(fit)
  out$r2 <- list(marginal = unname(r2$R2_marginal), conditional = unname(r2$R2_conditional))
  ic <- performance::icc(fit)
  out$icc <- list(adjusted = unname(ic$ICC_adjusted), unadjusted = unname(ic$ICC_unadjusted))
  if (!reml) {
    fixed <- lme4::nobars(as.formula(formula))
    lmfit <- lm(fixed, data = model.frame(fit))
    out$lrt_vs_lm <- list(chisq = 2 * (as.numeric(logLik(fit)) - as.numeric(logLik(lmfit))),
                          df = length(getME(fit, "theta")),
                          loglik_lm = as.numeric(logLik(lmfit)),
                          loglik_lmm = as.numeric(logLik(fit)))
  }
  ref_write_json(out, file.path(inf_dir, paste0(case, ".json")))
}

nlme_case <- function(case, fixed, random, data, data_ref, method = "REML") {
  if (!ref_wanted(case, "inference")) return(invisible(NULL))
  env <- new.env(parent = globalenv())
  assign("d", data, envir = env)
  fit <- eval(bquote(lme(.(as.formula(fixed)), random = .(as.formula(random)), data = d,
                         method = .(method), na.action = na.omit)), env)
  tt <- summary(fit)$tTable
  iv <- intervals(fit, which = "all")
  re <- iv$reStruct[[1]]
  out <- c(list(case = case), data_ref,
           list(fixed = fixed, random = random, method = method, versions = inf_versions,
                fixef_names = I(rownames(tt)), value = unname(tt[, "Value"]),
                se = unname(tt[, "Std.Error"]), df = unname(tt[, "DF"]),
                t = unname(tt[, "t-value"]), p = unname(tt[, "p-value"]),
                loglik = as.numeric(logLik(fit)), aic = AIC(fit), bic = BIC(fit),
                intervals_fixed = list(names = I(rownames(iv$fixed)),
                                       lower = unname(iv$fixed[, "lower"]),
                                       upper = unname(iv$fixed[, "upper"])),
                intervals_random = list(names = I(rownames(re)), lower = unname(re[, "lower"]),
                                        est = unname(re[, "est."]), upper = unname(re[, "upper"])),
                intervals_sigma = unname(as.numeric(iv$sigma))))
  ref_write_json(out, file.path(inf_dir, paste0(case, ".json")))
}

inf_ss <- ref_read_dataset("sleepstudy")
inf_hsb <- ref_read_dataset("hsb")
inf_pen <- ref_read_dataset("penicillin")
inf_pastes <- ref_read_dataset("pastes")
inf_ss_na_path <- file.path(ref_data_dir, "sleepstudy_na.csv")
inf_ss_na <- ref_read_data_file(inf_ss_na_path)

inf_case("sleepstudy_slopes_reml", "Reaction ~ Days + (Days | Subject)", inf_ss,
         list(dataset = "sleepstudy"),
         contrasts = list(matrix(c(0, 1), 1), diag(2)))
inf_case("sleepstudy_slopes_ml", "Reaction ~ Days + (Days | Subject)", inf_ss,
         list(dataset = "sleepstudy"), reml = FALSE)
inf_case("sleepstudy_intercept_ml", "Reaction ~ Days + (1 | Subject)", inf_ss,
         list(dataset = "sleepstudy"), reml = FALSE)
inf_case("hsb_reml", "mathach ~ ses * sector + (1 + ses | school)", inf_hsb,
         list(dataset = "hsb"),
         contrasts = list(matrix(c(0, 1, 0, 1), 1), rbind(c(0, 0, 1, 0), c(0, 0, 0, 1))))
inf_case("penicillin_reml", "diameter ~ 1 + (1 | plate) + (1 | sample)", inf_pen,
         list(dataset = "penicillin"))
inf_case("pastes_reml", "strength ~ 1 + (1 | batch/cask)", inf_pastes,
         list(dataset = "pastes"))
inf_case("sleepstudy_na_reml", "Reaction ~ Days + (Days | Subject)", inf_ss_na,
         list(data_file = inf_ss_na_path))

nlme_case("nlme_hsb_intercept", "mathach ~ 1", "~ 1 | school", inf_hsb, list(dataset = "hsb"))
nlme_case("nlme_hsb_ses_sector", "mathach ~ ses * sector", "~ 1 | school", inf_hsb,
          list(dataset = "hsb"))
nlme_case("nlme_sleepstudy", "Reaction ~ Days", "~ Days | Subject", inf_ss,
          list(dataset = "sleepstudy"))
