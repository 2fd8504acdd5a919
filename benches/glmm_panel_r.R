# lme4's glmer on the simulated binary panel (benches/make_glmm_panel.py):
# y ~ x1 + x2 + (1 + x1 | g), binomial. Prints "seconds feval -2logLik max_used_MB" per fit;
# R's own heap peak (gc's "max used", Ncells + Vcells) is measured around the fit only.
# Used by benches/bench_glmm_panel.py and bench_glmer_stream.py:
#   Rscript benches/glmm_panel_r.R FILE [reps] [nAGQ]
suppressMessages({library(lme4); library(data.table)})
args <- commandArgs(TRUE)
reps <- if (length(args) > 1) as.integer(args[2]) else 1L
nagq <- if (length(args) > 2) as.integer(args[3]) else 1L
d <- as.data.frame(fread(args[1]))
d$g <- factor(d$g)
for (i in seq_len(reps)) {
  invisible(gc(reset = TRUE))
  t <- system.time(f <- glmer(y ~ x1 + x2 + (1 + x1 | g), d, family = binomial, nAGQ = nagq))
  m <- gc()
  mb <- sum(m[, ncol(m)])  # "max used" (Mb), Ncells + Vcells
  cat("panel", t[["elapsed"]], f@optinfo$feval, sprintf("%.8f", -2 * as.numeric(logLik(f))), mb,
      "\n")
  cat("theta", sprintf("%.8f", getME(f, "theta")), "beta", sprintf("%.8f", fixef(f)), "\n")
}
