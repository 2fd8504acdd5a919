# Golden references for generalized linear mixed models from lme4's glmer and glmer.nb, one JSON
# per case in tests/reference/glmm/<case>.json, plus tests/reference/glmm/families.json (R's
# family objects evaluated on a few points). Sourced by tests/reference/make_reference.R (which
# defines the ref_* helpers); run `Rscript tests/reference/make_reference.R glmm` from the
# repository root.
#
# Data: cbpp is the bundled dataset (python/multilevel/datasets/cbpp.csv); every other dataset
# is written once by ref_write_data_file to tests/reference/data/<stem>.csv + .json and read
# back before fitting, so R and Python fit exactly the same rows and factor level orders.
# Simulated data use set.seed() with the seed recorded in the sidecar's description.
#
# Per fit (glmm_case), the JSON keys are:
#   case, dataset or data_file, formula, family, link, nagq, weights, offset (column names of the
#   glmer call's weights= / offset= arguments, or null; an offset inside the formula is in the
#   formula), note, versions {R, lme4, Matrix, MASS},
#   theta, theta_names, lower, terms [{group, columns, n_levels, q}] in theta order,
#   fixef_names, beta, vcov (p x p rows), se, sigma (lme4's sigma(): 1 for binomial and
#   Poisson, the dispersion's square root for Gamma), nb_theta (glmer.nb's dispersion theta,
#   only for negative binomial fits),
#   deviance (lme4's deviance()), minus2loglik (-2 logLik), loglik, aic, bic, df, df_resid,
#   nobs, ngroups {grp: n}, n_dropped,
#   model: {y (the response as glmer's response module holds it: proportions for cbind and
#   weighted proportions, 0/1 for a two-level factor), prior_weights, offset (the total offset,
#   per row), n (the binomial trials of the family's initialize; 1 otherwise), mustart (the
#   family's initialize), X_colnames, X_colsums (to check a design built elsewhere)},
#   ranef {grp: {levels, columns, values (levels x q), condvar (levels x q x q)}},
#   fitted (response scale, mu), linear_predictor (eta, includes the offset),
#   resid_deviance, resid_pearson, resid_response, resid_working,
#   optimizer {name, feval, conv, messages, gradient, hessian (lme4's derivs; null if absent)},
#   nagq0 {theta, beta, deviance, minus2loglik} (a glmer fit with nAGQ = 0, which is the first
#   stage of the two-stage optimisation: same optimiser, same start; for glmer.nb, with the
#   family negative.binomial(nb_theta)),
#   objective_at_opt (the nAGQ > 0 stage's deviance function from glmer(..., devFunOnly = TRUE)
#   evaluated at c(theta, beta); for nAGQ = 0 fits, the nAGQ = 0 deviance function at theta),
#   objective_at_other [{label, theta, beta, objective, objective_tight}] (the same function
#   elsewhere), objective_at_opt_tight (the same with glmerControl(tolPwrss = 1e-14): see
#   below),
#   glm_start {coefficients, deviance, iter} (glm() of the fixed part with the same family,
#   weights and offset, default glm.control: the GLM start of the Rust fit),
#   summary_text.
#
# About the objective: lme4's Laplace objective is ldL2 + ||u||^2 + family$aic(y, n, mu, wt,
# dev) at the conditional modes u (PIRLS minimises sum(dev.resids) + ||u||^2 for fixed beta).
# For binomial and Poisson family$aic is exactly -2 log p(y | u); for Gamma and inverse Gaussian
# it includes lme4's plug-in dispersion dev / sum(wt) and a +2.

suppressPackageStartupMessages({
  library(lme4)
  library(MASS)
})

glmm_dir <- file.path("tests", "reference", "glmm")
dir.create(glmm_dir, showWarnings = FALSE, recursive = TRUE)
glmm_versions <- ref_versions(c("lme4", "Matrix", "MASS"))

# ------------------------------------------------------------------------------ families

if (ref_wanted("families", "glmm")) {
  fam_point_sets <- list(
    binomial = list(mu = c(0.02, 0.3, 0.5, 0.77, 0.999), y = c(0, 0.25, 0.5, 1, 1),
                    wt = c(1, 4, 2, 1, 3), n = c(1, 4, 2, 1, 3),
                    eta = c(-40, -3.2, -0.4, 0, 1.7, 8, 40)),
    poisson = list(mu = c(0.05, 0.9, 2.5, 7, 40), y = c(0, 1, 2, 9, 35),
                   wt = c(1, 2, 1, 0.5, 1), n = rep(1, 5), eta = c(-3, -0.2, 0.5, 1.3, 3.1)),
    Gamma = list(mu = c(0.1, 0.8, 1.5, 4, 12), y = c(0.3, 0.5, 2, 3.5, 20),
                 wt = c(1, 2, 1, 1, 0.5), n = rep(1, 5), eta = c(0.2, 0.7, 1.3, 2.5, 4)),
    inverse.gaussian = list(mu = c(0.2, 0.8, 1.5, 4, 12), y = c(0.3, 0.5, 2, 3.5, 20),
                            wt = c(1, 2, 1, 1, 0.5), n = rep(1, 5),
                            eta = c(0.2, 0.7, 1.3, 2.5, 4)),
    negative.binomial = list(mu = c(0.05, 0.9, 2.5, 7, 40), y = c(0, 1, 2, 9, 35),
                             wt = c(1, 2, 1, 0.5, 1), n = rep(1, 5),
                             eta = c(-3, -0.2, 0.5, 1.3, 3.1)),
    gaussian = list(mu = c(1, 0.3, 2, 5, 9), y = c(0.5, 1, 2.5, 4, 10),
                    wt = c(1, 2, 1, 0.5, 1), n = rep(1, 5), eta = c(0.2, 0.7, 1.3, 2.5, 4))
  )
  fam_specs <- list(
    list("binomial", "logit"), list("binomial", "probit"), list("binomial", "cloglog"),
    list("binomial", "cauchit"), list("binomial", "log"),
    list("poisson", "log"), list("poisson", "identity"), list("poisson", "sqrt"),
    list("Gamma", "inverse"), list("Gamma", "log"), list("Gamma", "identity"),
    list("inverse.gaussian", "1/mu^2"), list("inverse.gaussian", "log"),
    list("inverse.gaussian", "inverse"), list("inverse.gaussian", "identity"),
    list("negative.binomial", "log"),
    list("gaussian", "identity"), list("gaussian", "log"), list("gaussian", "inverse")
  )
  nb_theta <- 1.7
  fam_entries <- lapply(fam_specs, function(s) {
    name <- s[[1]]
    link <- s[[2]]
    f <- if (name == "negative.binomial") MASS::negative.binomial(nb_theta, link = link)
         else get(name, mode = "function")(link = link)
    p <- fam_point_sets[[name]]
    eta <- p$eta
    # keep eta inside the link's domain for the links that have one
    if (link %in% c("log", "identity") && name == "binomial") eta <- -abs(eta) / 10 - 0.05
    if (link %in% c("sqrt", "inverse", "1/mu^2", "identity") && name != "binomial") eta <- abs(eta) + 0.1
    mu_ok <- p$mu
    dev_r <- f$dev.resids(p$y, mu_ok, p$wt)
    # initialize as glm.fit evaluates it: y (proportions), weights, nobs; sets mustart and n
    init_env <- new.env()
    init_env$y <- p$y
    init_env$weights <- if (name == "binomial") p$wt else rep(1, length(p$y))
    init_env$nobs <- length(p$y)
    init_env$etastart <- NULL
    init_env$start <- NULL
    init_env$mustart <- NULL
    init_env$family <- f
    suppressWarnings(eval(f$initialize, init_env))
    list(
      family = name, link = link, theta = if (name == "negative.binomial") nb_theta else NULL,
      r_family_name = f$family, r_link_name = f$link,
      eta = I(eta), linkinv = I(f$linkinv(eta)), mu_eta = I(f$mu.eta(eta)),
      valid_eta = f$valideta(eta),
      mu = I(mu_ok), linkfun = I(f$linkfun(mu_ok)), variance = I(f$variance(mu_ok)),
      valid_mu = f$validmu(mu_ok),
      y = I(p$y), wt = I(p$wt), n = I(p$n),
      dev_resids = I(dev_r),
      aic = f$aic(p$y, p$n, mu_ok, p$wt, sum(dev_r)),
      init_weights = I(init_env$weights), init_mustart = I(init_env$mustart),
      init_n = I(init_env$n)
    )
  })
  # Extreme linear predictors: R's thresholds in the binomial and log links.
  extreme_eta <- c(-800, -50, -31, -30, -29, 29, 30, 31, 50, 800)
  extremes <- lapply(c("logit", "probit", "cloglog", "cauchit"), function(link) {
    f <- binomial(link = link)
    list(link = link, eta = I(extreme_eta), linkinv = I(f$linkinv(extreme_eta)),
         mu_eta = I(f$mu.eta(extreme_eta)))
  })
  extremes[[length(extremes) + 1]] <- list(
    link = "log", family = "poisson", eta = I(extreme_eta),
    linkinv = I(poisson()$linkinv(extreme_eta)), mu_eta = I(poisson()$mu.eta(extreme_eta)))
  # Errors and warnings of the initialize expressions (messages as R words them).
  init_message <- function(f, y, weights) {
    env <- new.env()
    env$y <- y
    env$weights <- weights
    env$nobs <- NROW(y)
    env$etastart <- NULL
    env$start <- NULL
    env$mustart <- NULL
    env$family <- f
    w <- NULL
    e <- tryCatch({
      withCallingHandlers(eval(f$initialize, env), warning = function(c) {
        w <<- conditionMessage(c)
        invokeRestart("muffleWarning")
      })
      NULL
    }, error = function(c) conditionMessage(c))
    list(error = if (is.character(e)) e else NULL, warning = w)
  }
  messages <- list(
    poisson_negative = c(list(family = "poisson", y = I(c(1, -1, 3))),
                         init_message(poisson(), c(1, -1, 3), rep(1, 3))),
    binomial_above_one = c(list(family = "binomial", y = I(c(0.5, 1.2))),
                           init_message(binomial(), c(0.5, 1.2), rep(1, 2))),
    binomial_non_integer = c(list(family = "binomial", y = I(c(0.5, 0.3)), weights = I(c(3, 3))),
                             init_message(binomial(), c(0.5, 0.3), c(3, 3))),
    gamma_non_positive = c(list(family = "Gamma", y = I(c(1, 0, 2))),
                           init_message(Gamma(), c(1, 0, 2), rep(1, 3))),
    inverse_gaussian_non_positive = c(list(family = "inverse.gaussian", y = I(c(1, -2))),
                                      init_message(inverse.gaussian(), c(1, -2), rep(1, 2))),
    negative_binomial_negative = c(list(family = "negative.binomial", y = I(c(2, -1))),
                                   init_message(MASS::negative.binomial(1), c(2, -1), rep(1, 2)))
  )
  ref_write_json(list(
    case = "families",
    versions = glmm_versions,
    note = paste("R's family objects on a few points: linkinv and mu_eta at eta; linkfun and",
                 "variance at mu; dev_resids(y, mu, wt); aic(y, n, mu, wt, sum(dev_resids));",
                 "initialize evaluated with y, weights (binomial: wt, else 1)."),
    entries = fam_entries,
    extremes = extremes,
    messages = messages
  ), file.path(glmm_dir, "families.json"))
}

# ------------------------------------------------------------------------------ helpers
# The random effects and the terms are written by cases_lmm.R's lmm_ranef and lmm_terms
# (make_reference.R sources cases_lmm.R before this file, also for the argument `glmm`).

# Build and evaluate a glmer call in an environment where the data has the name data_name.
glmm_call <- function(fun, formula, data, data_name, family = NULL, nagq = 1L, weights = NULL,
                      offset = NULL, extra = list()) {
  env <- new.env(parent = globalenv())
  assign(data_name, data, envir = env)
  call <- as.call(c(list(as.name(fun), as.formula(formula, env = env),
                         data = as.name(data_name)), extra))
  if (!is.null(family)) call$family <- family
  if (fun == "glmer") call$nAGQ <- nagq
  if (!is.null(weights)) call$weights <- as.name(weights)
  if (!is.null(offset)) call$offset <- as.name(offset)
  eval(call, env)
}

glmm_case <- function(case, formula, data, family, dataset = NULL, data_file = NULL,
                      nagq = 1L, weights = NULL, offset = NULL, nb = FALSE, note = NULL,
                      other = NULL) {
  if (!ref_wanted(case, "glmm")) return(invisible(NULL))
  data_name <- if (!is.null(dataset)) dataset else sub("\\.csv$", "", basename(data_file))
  if (nb) {
    fit <- glmm_call("glmer.nb", formula, data, data_name, weights = weights, offset = offset)
    nb_theta <- getME(fit, "glmer.nb.theta")
    family <- call("negative.binomial", theta = nb_theta)
    fam <- MASS::negative.binomial(nb_theta)
  } else {
    fit <- glmm_call("glmer", formula, data, data_name, family, nagq, weights, offset)
    nb_theta <- NULL
    fam <- eval(family)
    if (is.function(fam)) fam <- fam()
  }
  stopifnot(fit@devcomp$dims[["nAGQ"]] == nagq)

  theta <- getME(fit, "theta")
  beta <- fixef(fit)
  V <- as.matrix(vcov(fit))
  ll <- logLik(fit)
  mf <- model.frame(fit)
  oi <- fit@optinfo
  resp <- fit@resp
  X <- getME(fit, "X")
  vc <- as.data.frame(VarCorr(fit))

  out <- list(
    case = case,
    dataset = dataset,
    data_file = data_file,
    formula = formula,
    family = if (nb) "negative.binomial" else fam$family,
    link = fam$link,
    nagq = as.integer(nagq),
    weights = if (is.null(weights)) NA_character_ else weights,
    offset = if (is.null(offset)) NA_character_ else offset,
    note = note,
    versions = glmm_versions,
    theta = I(unname(theta)),
    theta_names = I(names(theta)),
    lower = I(getME(fit, "lower")),
    terms = lmm_terms(fit),
    fixef_names = I(names(beta)),
    beta = I(unname(beta)),
    vcov = ref_rows(V),
    se = I(unname(sqrt(diag(V)))),
    sigma = sigma(fit),
    nb_theta = nb_theta,
    deviance = deviance(fit),
    minus2loglik = -2 * as.numeric(ll),
    loglik = as.numeric(ll),
    aic = AIC(fit),
    bic = BIC(fit),
    df = as.integer(attr(ll, "df")),
    df_resid = df.residual(fit),
    nobs = nobs(fit),
    ngroups = as.list(ngrps(fit)),
    n_dropped = nrow(data) - nobs(fit),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(
      group = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i],
      vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    model = list(
      y = I(as.double(resp$y)),
      prior_weights = I(unname(as.double(weights(fit, type = "prior")))),
      offset = I(as.double(resp$offset)),
      n = I(as.double(resp$n)),
      X_colnames = I(colnames(X)),
      X_colsums = I(unname(colSums(X)))
    ),
    ranef = lmm_ranef(fit),
    fitted = I(unname(fitted(fit))),
    linear_predictor = I(unname(predict(fit, type = "link"))),
    resid_deviance = I(unname(residuals(fit, type = "deviance"))),
    resid_pearson = I(unname(residuals(fit, type = "pearson"))),
    resid_response = I(unname(residuals(fit, type = "response"))),
    resid_working = I(unname(residuals(fit, type = "working"))),
    singular = isSingular(fit),
    optimizer = list(
      name = oi$optimizer, feval = oi$feval, conv = oi$conv$opt,
      messages = I(as.character(unlist(oi$conv$lme4$messages))),
      warnings = I(as.character(unlist(oi$warnings))),
      gradient = if (is.null(oi$derivs)) NULL else I(unname(oi$derivs$gradient)),
      hessian = if (is.null(oi$derivs)) NULL else ref_rows(oi$derivs$Hessian)
    )
  )

  # The family's initialize, as glm.fit evaluates it on the model frame's response.
  init <- new.env()
  init$y <- model.response(mf)
  init$weights <- if (is.null(weights)) rep(1, nrow(mf)) else as.double(mf[["(weights)"]])
  init$nobs <- nrow(mf)
  init$etastart <- NULL
  init$start <- NULL
  init$mustart <- NULL
  init$family <- fam
  suppressWarnings(eval(fam$initialize, init))
  out$model$mustart <- I(as.double(init$mustart))

  # GLM of the fixed part: the starting values of the Rust fit.
  glm_env <- new.env(parent = globalenv())
  assign(data_name, data, envir = glm_env)
  glm_call <- call("glm", nobars(as.formula(formula, env = glm_env)), family = fam,
                   data = as.name(data_name))
  if (!is.null(weights)) glm_call$weights <- as.name(weights)
  if (!is.null(offset)) glm_call$offset <- as.name(offset)
  g <- eval(glm_call, glm_env)
  out$glm_start <- list(coefficients = I(unname(coef(g))), names = I(names(coef(g))),
                        deviance = deviance(g), iter = g$iter, aic = g$aic)

  # The nAGQ = 0 stage (for glmer.nb: glmer with negative.binomial(nb_theta) held fixed).
  if (nagq > 0) {
    f0 <- glmm_call("glmer", formula, data, data_name, family, 0L, weights, offset)
    out$nagq0 <- list(theta = I(unname(getME(f0, "theta"))), beta = I(unname(fixef(f0))),
                      deviance = deviance(f0), minus2loglik = -2 * as.numeric(logLik(f0)))
  }

  out$summary_text <- paste(capture.output(print(summary(fit))), collapse = "\n")

  # Deviance function of the final stage, evaluated at lme4's estimates and elsewhere.
  devfun <- glmm_call("glmer", formula, data, data_name, family, nagq, weights, offset,
                      extra = list(devFunOnly = TRUE))
  # The same with PIRLS converged to tolPwrss = 1e-14: lme4's default (1e-7) stops when the
  # penalised deviance changes by less than 1e-7 relative and then uses the Cholesky factor of
  # the previous iterate's weights, which leaves ldL2 off by up to about 1e-5 relative (3e-6
  # for cbpp). The *_tight values are the Laplace/AGQ objective at the exact conditional
  # modes: the target of the 1e-8 tier.
  devfun_tight <- glmm_call("glmer", formula, data, data_name, family, nagq, weights, offset,
                            extra = list(devFunOnly = TRUE,
                                         control = quote(glmerControl(tolPwrss = 1e-14))))
  se <- unname(sqrt(diag(V)))
  if (nagq > 0) {
    at <- function(th, b) devfun(c(th, b))
    at_tight <- function(th, b) devfun_tight(c(th, b))
    out$objective_at_opt <- at(unname(theta), unname(beta))
    out$objective_at_opt_tight <- at_tight(unname(theta), unname(beta))
    if (is.null(other)) other <- list(
      list(label = "1.5 x theta, beta", theta = 1.5 * unname(theta), beta = unname(beta)),
      list(label = "0.5 x theta, beta + se / 2", theta = 0.5 * unname(theta),
           beta = unname(beta) + se / 2)
    )
    out$objective_at_other <- lapply(other, function(o) list(
      label = o$label, theta = I(o$theta), beta = I(o$beta), objective = at(o$theta, o$beta),
      objective_tight = at_tight(o$theta, o$beta)))
  } else {
    th <- unname(theta)
    out$objective_at_opt <- devfun(th)
    out$objective_at_opt_tight <- devfun_tight(th)
    out$objective_at_other <- list(list(label = "1.5 x theta", theta = I(1.5 * th),
                                        objective = devfun(1.5 * th),
                                        objective_tight = devfun_tight(1.5 * th)))
  }
  if (!nb) stopifnot(abs(out$objective_at_opt - out$minus2loglik) <= 1e-6 * abs(out$minus2loglik))
  out <- Filter(Negate(is.null), out)
  ref_write_json(out, file.path(glmm_dir, paste0(case, ".json")))
  invisible(fit)
}

# ------------------------------------------------------------------------------ data

glmm_data <- function(df, stem, description) {
  path <- ref_write_data_file(df, stem, description)
  list(path = path, data = ref_read_data_file(path))
}

cbpp_b <- ref_read_dataset("cbpp")

cbpp_prop <- cbpp_b
cbpp_prop$prop <- cbpp_prop$incidence / cbpp_prop$size
cbpp_prop <- glmm_data(cbpp_prop, "cbpp_prop",
  "cbpp (bundled) with prop = incidence / size, for a proportion response with weights = size")

gt <- lme4::grouseticks
gt <- gt[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION")]
grouseticks_d <- glmm_data(gt, "grouseticks",
  paste("lme4's grouseticks (lme4", glmm_versions$lme4, "), columns INDEX, TICKS, BROOD,",
        "HEIGHT, YEAR, LOCATION"))

verbagg_d <- glmm_data(lme4::VerbAgg, "verbagg", paste("lme4's VerbAgg (lme4", glmm_versions$lme4, ")"))

contraception_d <- glmm_data(mlmRev::Contraception, "contraception",
  paste("mlmRev's Contraception (mlmRev", packageVersion("mlmRev"), ")"))

# Poisson counts with an exposure: 30 groups of 4 to 14 rows.
set.seed(20261203)
ng <- 30
sizes <- sample(4:14, ng, replace = TRUE)
g <- factor(rep(seq_len(ng), sizes))
n <- length(g)
x <- round(rnorm(n), 3)
t <- round(runif(n, 0.5, 4), 3)
b <- rnorm(ng, sd = 0.6)
y <- rpois(n, t * exp(-0.5 + 0.4 * x + b[as.integer(g)]))
poisson_offset_d <- glmm_data(data.frame(g = g, x = x, t = t, y = as.double(y)),
  "sim_poisson_offset",
  paste("simulated, set.seed(20261203): 30 groups g of 4..14 rows, x ~ N(0,1), exposure t ~",
        "U(0.5, 4), y ~ Poisson(t exp(-0.5 + 0.4 x + b_g)), b_g ~ N(0, 0.6^2)"))

# Gamma with a log link: 25 groups of 8 rows, shape 4.
set.seed(20261204)
ng <- 25
g <- factor(rep(seq_len(ng), each = 8))
n <- length(g)
x <- round(rnorm(n), 3)
b <- rnorm(ng, sd = 0.4)
mu <- exp(1 + 0.3 * x + b[as.integer(g)])
y <- signif(rgamma(n, shape = 4, scale = mu / 4), 6)
gamma_d <- glmm_data(data.frame(g = g, x = x, y = y), "sim_gamma",
  paste("simulated, set.seed(20261204): 25 groups g of 8 rows, x ~ N(0,1), y ~ Gamma(shape 4,",
        "mean exp(1 + 0.3 x + b_g)) to 6 significant digits, b_g ~ N(0, 0.4^2)"))

# Negative binomial: 40 groups of 10 rows, size 2.
set.seed(20261205)
ng <- 40
g <- factor(rep(seq_len(ng), each = 10))
n <- length(g)
x <- round(rnorm(n), 3)
b <- rnorm(ng, sd = 0.5)
y <- rnbinom(n, size = 2, mu = exp(0.5 + 0.5 * x + b[as.integer(g)]))
nb_d <- glmm_data(data.frame(g = g, x = x, y = as.double(y)), "sim_negbin",
  paste("simulated, set.seed(20261205): 40 groups g of 10 rows, x ~ N(0,1), y ~ NB(size 2,",
        "mean exp(0.5 + 0.5 x + b_g)), b_g ~ N(0, 0.5^2)"))

# ------------------------------------------------------------------------------ fits

glmm_case("cbpp_laplace", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
          cbpp_b, quote(binomial), dataset = "cbpp", nagq = 1L)
glmm_case("cbpp_agq25", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
          cbpp_b, quote(binomial), dataset = "cbpp", nagq = 25L)
glmm_case("cbpp_nagq0", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
          cbpp_b, quote(binomial), dataset = "cbpp", nagq = 0L,
          note = "nAGQ = 0: beta is estimated in PIRLS; objective_at_opt is the devfun of theta alone")
glmm_case("cbpp_probit_prop", "prop ~ period + (1 | herd)", cbpp_prop$data,
          quote(binomial(link = "probit")), data_file = cbpp_prop$path, weights = "size",
          note = "proportion response with weights = trials (size), probit link")
glmm_case("grouseticks", "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
          grouseticks_d$data, quote(poisson), data_file = grouseticks_d$path,
          note = paste("scale(HEIGHT): (HEIGHT - mean) / sd with R's sd (n - 1). The optimum is",
                       "flat: reruns of lme4 in another process environment moved theta by",
                       "about 2e-5 (rounding noise), so compare estimates at the SE tier"))
glmm_case("grouseticks_help", "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
          grouseticks_d$data, quote(poisson), data_file = grouseticks_d$path,
          note = paste("the model of lme4's ?grouseticks example (unscaled HEIGHT): lme4 warns",
                       "of a large gradient and near unidentifiability; same fit as the scaled one"))
glmm_case("verbagg", "r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item)",
          verbagg_d$data, quote(binomial), data_file = verbagg_d$path,
          note = "crossed random effects; r2 is a two-level factor (N, Y): y = (r2 == 'Y')")
glmm_case("contraception", "use ~ urban + age + livch + (1 | district)",
          contraception_d$data, quote(binomial), data_file = contraception_d$path)
glmm_case("contraception_urban", "use ~ urban + age + livch + (urban | district)",
          contraception_d$data, quote(binomial), data_file = contraception_d$path)
glmm_case("poisson_offset", "y ~ x + offset(log(t)) + (1 | g)", poisson_offset_d$data,
          quote(poisson), data_file = poisson_offset_d$path)
glmm_case("poisson_offset_agq9", "y ~ x + offset(log(t)) + (1 | g)", poisson_offset_d$data,
          quote(poisson), data_file = poisson_offset_d$path, nagq = 9L)
glmm_case("gamma_log", "y ~ x + (1 | g)", gamma_d$data, quote(Gamma(link = "log")),
          data_file = gamma_d$path,
          note = "lme4's Laplace objective for Gamma uses family$aic with dispersion dev / n")
glmm_case("negbin", "y ~ x + (1 | g)", nb_d$data, NULL, data_file = nb_d$path, nb = TRUE,
          note = paste("glmer.nb: nb_theta is the estimated dispersion; the objective is glmer's",
                       "with family negative.binomial(nb_theta) held fixed"))

# ------------------------------------------------------------------------------ extras
# predict.merMod on new data, anova between glmer fits, a singular fit (extras.json).

glmm_extras <- function() {
  f1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_b, binomial)
  f0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp_b, binomial)
  nd <- data.frame(period = factor(c("1", "2", "3", "4", "2"), levels = levels(cbpp_b$period)),
                   herd = factor(c("1", "5", "15", "3", "99")))
  pr <- function(fit, newdata, ...) I(unname(predict(fit, newdata, ...)))
  cbpp_pred <- list(
    newdata = list(period = I(as.character(nd$period)), herd = I(as.character(nd$herd))),
    link = pr(f1, nd, allow.new.levels = TRUE),
    response = pr(f1, nd, type = "response", allow.new.levels = TRUE),
    link_re_na = pr(f1, nd, re.form = NA),
    response_re_na = pr(f1, nd, type = "response", re.form = NA))
  po <- glmer(y ~ x + offset(log(t)) + (1 | g), poisson_offset_d$data, poisson)
  pnd <- data.frame(x = c(-1, 0, 0.5, 2), t = c(1, 2, 0.5, 3), g = factor(c("1", "7", "30", "31")))
  po_pred <- list(
    newdata = list(x = I(pnd$x), t = I(pnd$t), g = I(as.character(pnd$g))),
    link = pr(po, pnd, allow.new.levels = TRUE),
    response = pr(po, pnd, type = "response", allow.new.levels = TRUE),
    response_re_na = pr(po, pnd, type = "response", re.form = NA),
    response_fitted = I(unname(predict(po, type = "response"))))
  a <- anova(f0, f1)
  an <- list(models = I(c("f0", "f1")), npar = I(unname(a$npar)), AIC = I(unname(a$AIC)),
             BIC = I(unname(a$BIC)), logLik = I(unname(a$logLik)),
             deviance = I(unname(a[[5]])), Chisq = I(unname(a$Chisq)), Df = I(unname(a$Df)),
             p = I(unname(a[["Pr(>Chisq)"]])), names = I(names(a)))
  # A singular fit: binary responses with no group variation.
  set.seed(20261206)
  sg <- data.frame(g = factor(rep(1:10, each = 20)), x = round(rnorm(200), 3))
  sg$y <- as.double(rbinom(200, 1, plogis(0.2 + 0.5 * sg$x)))
  sing_d <- glmm_data(sg, "sim_singular_binary",
    paste("simulated, set.seed(20261206): 10 groups g of 20 rows, x ~ N(0,1),",
          "y ~ Bernoulli(plogis(0.2 + 0.5 x)), no group effect"))
  msgs <- character(0)
  fs <- withCallingHandlers(glmer(y ~ x + (1 | g), sing_d$data, binomial),
    message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") })
  sing <- list(data_file = sing_d$path, formula = "y ~ x + (1 | g)", theta = I(getME(fs, "theta")),
               beta = I(unname(fixef(fs))), minus2loglik = -2 * as.numeric(logLik(fs)),
               is_singular = isSingular(fs), messages = I(msgs))
  ref_write_json(list(cbpp_predict = cbpp_pred, poisson_offset_predict = po_pred,
                      cbpp_anova = an, singular = sing, versions = glmm_versions),
                 file.path(glmm_dir, "extras.json"))
}
if (ref_wanted("extras", "glmm")) glmm_extras()

# ------------------------------------------------------------------------------ profiles
# lme4's profile intervals of glmer fits (glmm_profile_<case>.json; `Rscript
# tests/reference/make_reference.R glmm_profile` writes these alone): confint(fit, method =
# "profile") at 95% (rows .sig01 ... then the fixed effects) and the profile table itself
# (as.data.frame(profile(fit)): the parameter's value and .zeta at each point lme4 visited),
# so that zeta can be checked at given values apart from lme4's spline interpolation.
#   case, formula, family, data_file/dataset, names, lower, upper, level,
#   profile {par: {value, zeta}}, versions

glmm_profile_case <- function(case, formula, data, family, dataset = NULL, data_file = NULL) {
  if (!ref_wanted(case, "glmm") && !ref_wanted(case, "glmm_profile")) return(invisible(NULL))
  data_name <- if (!is.null(dataset)) dataset else sub("\\.csv$", "", basename(data_file))
  fit <- glmm_call("glmer", formula, data, data_name, family, 1L)
  pr <- profile(fit)
  ci <- confint(pr, level = 0.95)
  pdf <- as.data.frame(pr)
  traces <- lapply(levels(pdf$.par), function(p) {
    rows <- pdf[pdf$.par == p, ]
    list(value = I(unname(rows[[p]])), zeta = I(unname(rows$.zeta)))
  })
  names(traces) <- levels(pdf$.par)
  ref_write_json(list(
    case = case, formula = formula, family = eval(family)()$family, dataset = dataset,
    data_file = data_file, names = I(rownames(ci)), lower = I(unname(ci[, 1])),
    upper = I(unname(ci[, 2])), level = 0.95, minus2loglik = -2 * as.numeric(logLik(fit)),
    profile = traces, versions = glmm_versions
  ), file.path(glmm_dir, paste0(case, ".json")))
  invisible(fit)
}

glmm_profile_case("glmm_profile_cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                  cbpp_b, quote(binomial), dataset = "cbpp")
glmm_profile_case("glmm_profile_poisson_offset", "y ~ x + offset(log(t)) + (1 | g)",
                  poisson_offset_d$data, quote(poisson), data_file = poisson_offset_d$path)

# ------------------------------------------------------------------------------ broom.mixed
# broom.mixed's tidy (with Wald intervals), glance and augment of the cbpp glmer fit
# (glmm_broom_cbpp.json; `Rscript tests/reference/make_reference.R glmm_broom`): the column
# names and values. augment's matrix response column (cbind) is left out of `augment`.

if (ref_wanted("glmm_broom_cbpp", "glmm") || ref_wanted("glmm_broom_cbpp", "glmm_broom")) {
  suppressPackageStartupMessages(library(broom.mixed))
  bf <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_b, binomial)
  td <- as.data.frame(tidy(bf, conf.int = TRUE))
  gl <- as.data.frame(glance(bf))
  au <- suppressWarnings(augment(bf))
  au_cols <- setdiff(names(au), c("cbind(incidence, size - incidence)", "period", "herd"))
  ref_write_json(list(
    case = "glmm_broom_cbpp",
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", dataset = "cbpp",
    tidy = list(columns = I(names(td)), effect = I(td$effect), group = I(td$group),
                term = I(td$term), estimate = I(td$estimate), std.error = I(td$std.error),
                statistic = I(td$statistic), p.value = I(td$p.value),
                conf.low = I(td$conf.low), conf.high = I(td$conf.high)),
    glance = c(list(columns = I(names(gl))), lapply(gl, function(v) as.double(v))),
    augment = c(list(columns = I(names(au))),
                lapply(as.list(as.data.frame(au)[au_cols]), function(v) I(as.double(v)))),
    versions = c(glmm_versions, list(broom.mixed = as.character(packageVersion("broom.mixed"))))
  ), file.path(glmm_dir, "glmm_broom_cbpp.json"))
}
