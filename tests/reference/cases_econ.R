# Golden values for the econometric companions: robust OLS (sandwich, clubSandwich), panel
# estimators (plm) and per-group fits (nlme::lmList).
#
# Run from the repository root, standalone or sourced by tests/reference/make_reference.R:
#     Rscript tests/reference/cases_econ.R
# Writes tests/reference/data/hetero.csv (simulated, fixed seed) and one JSON per case in
# tests/reference/econ/. Numbers are written with 17 significant digits and every file is
# checked to read back bit for bit.
#
# Data: the bundled CSVs python/multilevel/datasets/{grunfeld,hsb}.csv (exported from plm's
# Grunfeld and nlme's MathAchieve), so that R and Python see identical data.

local({
  suppressPackageStartupMessages({
    library(jsonlite)
    library(sandwich)
    library(clubSandwich)
    library(plm)
    library(nlme)
  })

  out_dir <- file.path("tests", "reference", "econ")
  data_dir <- file.path("tests", "reference", "data")
  bundled <- file.path("python", "multilevel", "datasets")
  dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
  dir.create(data_dir, showWarnings = FALSE, recursive = TRUE)

  versions <- list(
    R = R.version.string,
    sandwich = as.character(packageVersion("sandwich")),
    clubSandwich = as.character(packageVersion("clubSandwich")),
    plm = as.character(packageVersion("plm")),
    nlme = as.character(packageVersion("nlme")),
    jsonlite = as.character(packageVersion("jsonlite"))
  )

  mat <- function(m) {
    m <- as.matrix(m)
    list(rownames = rownames(m), colnames = colnames(m),
         values = lapply(seq_len(nrow(m)), function(i) unname(m[i, ])))
  }
  named <- function(v) as.list(v)

  # jsonlite (1.8) prints at most 15 significant digits whatever `digits` says, so every double
  # is formatted here with 17 significant digits (exact round trip) and inserted verbatim.
  num17 <- function(v) {
    s <- sprintf("%.17g", v)
    s[is.na(v) | !is.finite(v)] <- "null"
    s
  }
  to_verbatim <- function(x) {
    if (is.data.frame(x)) x <- as.list(x)
    if (is.list(x)) {
      return(lapply(x, to_verbatim))
    }
    if (is.double(x)) {
      s <- num17(x)
      txt <- if (length(x) == 1L) s else paste0("[", paste(s, collapse = ","), "]")
      return(structure(txt, class = "json"))
    }
    x
  }
  leaves <- function(x) {
    if (is.list(x)) unlist(lapply(unname(x), leaves), use.names = FALSE)
    else if (is.numeric(x)) as.double(x) else NULL
  }
  write_case <- function(name, x) {
    x$versions <- versions
    path <- file.path(out_dir, paste0(name, ".json"))
    txt <- toJSON(to_verbatim(x), auto_unbox = TRUE, null = "null", na = "null",
                  json_verbatim = TRUE, pretty = FALSE)
    # Check that every number reads back bit for bit.
    back <- fromJSON(txt, simplifyVector = FALSE)
    a <- leaves(x)
    b <- leaves(back)
    stopifnot(length(a) == length(b), identical(a[!is.na(a)], b[!is.na(a)]))
    writeLines(txt, path)
    message("wrote ", path)
  }

  write_csv17 <- function(df, path) {
    out <- df
    for (nm in names(out)) {
      if (is.double(out[[nm]])) out[[nm]] <- sprintf("%.17g", out[[nm]])
    }
    write.csv(out, path, row.names = FALSE, quote = FALSE)
  }

  # ---------------------------------------------------------------- simulated hetero data
  set.seed(20240917)
  n <- 400
  g <- sample(rep(1:40, length.out = n))        # 40 clusters of 10
  h <- sample(rep(1:15, length.out = n))        # 15 clusters, crossed with g
  x1 <- rnorm(n)
  x2 <- runif(n, -1, 1)
  u_g <- rnorm(40, sd = 0.7)[g]
  u_h <- rnorm(15, sd = 0.5)[h]
  e <- rnorm(n) * (0.3 + abs(x1))               # heteroskedastic
  y <- 1 + 2 * x1 - 0.5 * x2 + u_g + u_h + e
  w <- runif(n, 0.5, 2)
  hetero <- data.frame(y = y, x1 = x1, x2 = x2, g = g, h = h, w = w)
  write_csv17(hetero, file.path(data_dir, "hetero.csv"))
  hetero <- read.csv(file.path(data_dir, "hetero.csv"))  # what Python reads
  stopifnot(identical(hetero$y, y), identical(hetero$w, w))

  ols_case <- function(fit, data, cl, cl2 = NULL, weighted = FALSE) {
    n <- nobs(fit); k <- length(coef(fit))
    s <- summary(fit)
    res <- list(
      coef = named(coef(fit)),
      nobs = n, df_resid = df.residual(fit), sigma = s$sigma,
      r2 = s$r.squared, adj_r2 = s$adj.r.squared,
      fstat = unname(s$fstatistic[1]), f_df1 = unname(s$fstatistic[2]),
      f_df2 = unname(s$fstatistic[3]),
      vcov_iid = mat(vcov(fit)),
      vcov_HC0 = mat(vcovHC(fit, type = "HC0")),
      vcov_HC1 = mat(vcovHC(fit, type = "HC1")),
      vcov_HC2 = mat(vcovHC(fit, type = "HC2")),
      vcov_HC3 = mat(vcovHC(fit, type = "HC3")),
      # sandwich::vcovCL: CR0 = no adjustment; CR1 = default (HC1 type, cadjust):
      # G/(G-1) * (n-1)/(n-k), Stata's vce(cluster).
      vcov_CR0 = mat(vcovCL(fit, cluster = data[[cl]], type = "HC0", cadjust = FALSE)),
      vcov_CR1 = mat(vcovCL(fit, cluster = data[[cl]])),
      vcov_CR1G = mat(vcovCL(fit, cluster = data[[cl]], type = "HC0", cadjust = TRUE))
    )
    v2 <- vcovCR(fit, cluster = data[[cl]], type = "CR2")
    ct <- coef_test(fit, vcov = v2, test = "Satterthwaite")
    res$vcov_CR2 <- mat(as.matrix(v2))
    res$CR2_df <- named(setNames(ct$df_Satt, names(coef(fit))))
    res$CR2_p <- named(setNames(ct$p_Satt, names(coef(fit))))
    res$G <- length(unique(data[[cl]]))
    if (!is.null(cl2)) {
      two <- data[, c(cl, cl2)]
      res$vcov_CR1_twoway <- mat(vcovCL(fit, cluster = two))
      res$vcov_CR0_twoway <- mat(vcovCL(fit, cluster = two, type = "HC0", cadjust = FALSE))
    }
    res
  }

  fit_h <- lm(y ~ x1 + x2, data = hetero)
  case <- ols_case(fit_h, hetero, "g", "h")
  case$formula <- "y ~ x1 + x2"; case$cluster <- "g"; case$cluster2 <- "h"
  case$data_file <- "tests/reference/data/hetero.csv"
  write_case("ols_hetero", case)

  fit_hw <- lm(y ~ x1 + x2, data = hetero, weights = w)
  case <- ols_case(fit_hw, hetero, "g", "h", weighted = TRUE)
  case$formula <- "y ~ x1 + x2"; case$cluster <- "g"; case$cluster2 <- "h"
  case$weights <- "w"
  case$data_file <- "tests/reference/data/hetero.csv"
  write_case("ols_hetero_weighted", case)

  # ---------------------------------------------------------------- HSB
  hsb_path <- file.path(bundled, "hsb.csv")
  stopifnot(file.exists(hsb_path))
  hsb <- read.csv(hsb_path, colClasses = c(school = "character"))
  fit_s <- lm(mathach ~ ses, data = hsb)
  case <- ols_case(fit_s, hsb, "school")
  case$formula <- "mathach ~ ses"; case$cluster <- "school"
  case$data_file <- "python/multilevel/datasets/hsb.csv"
  write_case("ols_hsb", case)

  # lmList by school (nlme): per-group coefficients, pooled and unpooled standard errors.
  ll <- lmList(mathach ~ ses | school, data = hsb)
  cf <- coef(ll)
  sp <- summary(ll, pool = TRUE)$coefficients   # groups x {Estimate, SE, t, p} x terms
  su <- summary(ll, pool = FALSE)$coefficients
  se_pool <- sapply(dimnames(sp)[[3]], function(t) sp[, "Std. Error", t])
  se_unpool <- sapply(dimnames(su)[[3]], function(t) su[, "Std. Error", t])
  case <- list(
    formula = "mathach ~ ses", group = "school",
    groups = rownames(cf),
    coef = mat(as.matrix(cf)),
    se_pooled = mat(se_pool), se = mat(se_unpool),
    pooled_sigma = summary(ll, pool = TRUE)$RSE,
    coef_cov = mat(cov(as.matrix(cf))),
    coef_mean = named(colMeans(cf)),
    data_file = "python/multilevel/datasets/hsb.csv"
  )
  write_case("lmlist_hsb", case)

  # ---------------------------------------------------------------- Grunfeld (plm)
  gr_path <- file.path(bundled, "grunfeld.csv")
  stopifnot(file.exists(gr_path))
  gr <- read.csv(gr_path)
  gr_formula <- inv ~ value + capital

  panel_case <- function(d, label, drop_keys = NULL) {
    idx <- c("firm", "year")
    m <- list(
      within = plm(gr_formula, d, model = "within", index = idx),
      random = plm(gr_formula, d, model = "random", index = idx),
      between = plm(gr_formula, d, model = "between", index = idx),
      pooled = plm(gr_formula, d, model = "pooling", index = idx),
      fd = plm(gr_formula, d, model = "fd", index = idx)
    )
    out <- list(formula = "inv ~ value + capital", entity = "firm", time = "year",
                balanced = is.pbalanced(pdata.frame(d, index = idx)))
    for (nm in names(m)) {
      fit <- m[[nm]]
      s <- summary(fit)
      r <- list(coef = named(coef(fit)), vcov = mat(vcov(fit)),
                nobs = nobs(fit), df_resid = df.residual(fit),
                rsq = unname(s$r.squared["rsq"]), adjrsq = unname(s$r.squared["adjrsq"]),
                ssr = sum(residuals(fit)^2))
      if (nm %in% c("within", "random", "pooled")) {
        r$vcov_CR1 <- mat(vcovHC(fit, method = "arellano", type = "sss", cluster = "group"))
        r$vcov_CR0 <- mat(vcovHC(fit, method = "arellano", type = "HC0", cluster = "group"))
      }
      if (nm == "random") {
        ec <- ercomp(fit)
        r$sigma2_idios <- unname(ec$sigma2["idios"])
        r$sigma2_id <- unname(ec$sigma2["id"])
        th <- ec$theta
        r$theta <- if (length(th) == 1) unname(th) else unname(th[!duplicated(names(th))])
        r$theta_entities <- if (length(th) == 1) NULL else
          unname(names(th)[!duplicated(names(th))])
      }
      if (nm == "within") {
        fe <- fixef(fit)
        r$fixef <- named(fe)
        ft <- s$fstatistic
        r$fstat <- unname(ft$statistic); r$f_df <- unname(ft$parameter)
      }
      out[[nm]] <- r
    }
    ph <- phtest(m$within, m$random)
    out$hausman <- list(stat = unname(ph$statistic), df = unname(ph$parameter),
                        p = ph$p.value)
    out$drop <- drop_keys
    out$data_file <- "python/multilevel/datasets/grunfeld.csv"
    write_case(label, out)
  }
  panel_case(gr, "panel_grunfeld")
  # Unbalanced: drop a leading run, a gap inside a firm's years and single years.
  drop_keys <- data.frame(firm = c(1, 1, 3, 3, 3, 7, 10),
                          year = c(1935, 1936, 1944, 1945, 1946, 1944, 1954))
  keep <- !(paste(gr$firm, gr$year) %in% paste(drop_keys$firm, drop_keys$year))
  panel_case(gr[keep, ], "panel_grunfeld_unbalanced", drop_keys = drop_keys)
})
