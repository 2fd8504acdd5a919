# R side of benches/bench_influence.py: leave-one-group-out refits with lme4, as HLMdiag's
# case_delete makes them (one update(fit, data = subset) per level of the grouping factor).
#
# Usage: Rscript benches/influence_r.R CASE REPS
#   CASE  hsb (mathach ~ ses + (ses | school), 160 schools) | sleepstudy (18 subjects)
# The full model is fitted before the timer; only the refits are timed (elapsed). Prints one
# JSON object: {"case", "times"}.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
case <- args[[1]]
reps <- as.integer(args[[2]])
ds <- file.path("python", "multilevel", "datasets")
if (case == "hsb") {
  d <- read.csv(file.path(ds, "hsb.csv"))
  d$school <- factor(d$school)
  fit <- lmer(mathach ~ ses + (ses | school), d)
  level <- "school"
} else {
  d <- read.csv(file.path(ds, "sleepstudy.csv"))
  d$Subject <- factor(d$Subject)
  fit <- lmer(Reaction ~ Days + (Days | Subject), d)
  level <- "Subject"
}
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  out <- lapply(levels(d[[level]]), function(lv) {
    m <- suppressMessages(suppressWarnings(update(fit, data = d[d[[level]] != lv, ])))
    list(fixef(m), as.matrix(vcov(m)), VarCorr(m))
  })
  times[i] <- proc.time()[["elapsed"]] - t0
}
cat(toJSON(list(case = case, times = times), digits = NA), "\n")
