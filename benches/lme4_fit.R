# lme4 side of benches/bench_lmm.py.
#
# Usage: Rscript benches/lme4_fit.R CASE REPS [MODE] [CSV]
#   CASE  insteval | sleepstudy | panel1m
#   REPS  number of timed fits (the median is reported)
#   MODE  "time" (default) or "mem": one fit, with the process's peak resident set size
#         measured around it (Linux /proc/self/status; VmHWM reset through
#         /proc/self/clear_refs after the data are loaded)
#   CSV   the simulated panel (panel1m only), written by bench_lmm.py
#
# Data are loaded and factors set before any timing; only the lmer() call is timed
# (proc.time() elapsed around it). Prints one JSON object on stdout.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
case <- args[[1]]
reps <- as.integer(args[[2]])
mode <- if (length(args) >= 3) args[[3]] else "time"
csv <- if (length(args) >= 4) args[[4]] else NA_character_

status_kb <- function() {
  s <- readLines("/proc/self/status")
  get <- function(key) {
    line <- grep(paste0("^", key, ":"), s, value = TRUE)
    as.numeric(sub("^[A-Za-z]+:\\s*([0-9]+).*$", "\\1", line))
  }
  c(rss = get("VmRSS"), hwm = get("VmHWM"))
}

if (case == "insteval") {
  data <- lme4::InstEval
  form <- y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)
  reml <- TRUE
} else if (case == "sleepstudy") {
  data <- lme4::sleepstudy
  form <- Reaction ~ Days + (Days | Subject)
  reml <- TRUE
} else if (case == "panel1m") {
  suppressPackageStartupMessages(library(data.table))
  data <- as.data.frame(fread(csv, showProgress = FALSE))
  data$g <- factor(data$g)
  form <- y ~ x1 + x2 + x3 + (1 + x1 | g)
  reml <- FALSE
} else {
  stop("unknown case ", case)
}

fit_once <- function() lmer(form, data = data, REML = reml)

mem <- NULL
times <- numeric(0)
if (mode == "mem") {
  invisible(gc())
  before <- status_kb()
  gc_reset <- gc(reset = TRUE)
  reset_ok <- tryCatch({
    writeLines("5", "/proc/self/clear_refs")
    TRUE
  }, error = function(e) FALSE, warning = function(w) FALSE)
  t0 <- proc.time()[["elapsed"]]
  fit <- fit_once()
  times <- proc.time()[["elapsed"]] - t0
  after <- status_kb()
  g <- gc()
  mem <- list(
    rss_loaded_kb = before[["rss"]],
    peak_before_fit_kb = before[["hwm"]],
    peak_fit_kb = after[["hwm"]],
    hwm_reset = reset_ok,
    r_heap_max_used_mb = sum(g[, ncol(g)])
  )
} else {
  for (i in seq_len(reps)) {
    t0 <- proc.time()[["elapsed"]]
    fit <- fit_once()
    times <- c(times, proc.time()[["elapsed"]] - t0)
  }
}

vc <- as.data.frame(VarCorr(fit))
out <- list(
  case = case,
  mode = mode,
  times = I(times),
  median = median(times),
  fixef = as.list(fixef(fit)),
  se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
  theta = unname(getME(fit, "theta")),
  theta_names = names(getME(fit, "theta")),
  objective = if (reml) unname(getME(fit, "devcomp")$cmp[["REML"]]) else unname(deviance(fit)),
  n_eval = fit@optinfo$feval,
  optimizer = fit@optinfo$optimizer,
  varcorr = list(grp = vc$grp, var1 = vc$var1, var2 = vc$var2, sdcor = vc$sdcor),
  mem = mem,
  versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                  lme4 = as.character(packageVersion("lme4")))
)
cat(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), "\n")
