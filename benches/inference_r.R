# R side of benches/bench_inference.py: times one inference task with lme4 / pbkrtest.
#
# Usage: Rscript benches/inference_r.R TASK REPS
#   TASK  kr_hsb | profile_sleepstudy | profile_hsb | boot_sleepstudy
# Data are read from the bundled CSVs and the model is fitted before timing; only the task is
# timed (elapsed). Prints one JSON object: {"task", "times"}.
suppressPackageStartupMessages({
  library(lme4)
  library(pbkrtest)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
task <- args[[1]]
reps <- as.integer(args[[2]])
ds <- file.path("python", "multilevel", "datasets")
if (grepl("sleepstudy", task)) {
  d <- read.csv(file.path(ds, "sleepstudy.csv"))
  d$Subject <- factor(d$Subject)
  fit <- lmer(Reaction ~ Days + (Days | Subject), d)
} else {
  d <- read.csv(file.path(ds, "hsb.csv"))
  d$school <- factor(d$school)
  d$sector <- factor(d$sector, levels = c("Public", "Catholic"))
  fit <- lmer(mathach ~ ses * sector + (1 + ses | school), d)
}
run <- switch(task,
  kr_hsb = function() {
    va <- vcovAdj(fit)
    for (j in 1:4) Lb_ddf(diag(4)[j, ], vcov(fit), va)
  },
  profile_sleepstudy = function() suppressWarnings(confint(profile(fit))),
  profile_hsb = function() suppressWarnings(confint(profile(fit))),
  boot_sleepstudy = function() bootMer(fit, function(m) c(fixef(m), getME(m, "theta")),
                                       nsim = 1000, seed = 1),
  stop("unknown task ", task))
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  run()
  times[i] <- proc.time()[["elapsed"]] - t0
}
cat(toJSON(list(task = task, times = times), auto_unbox = TRUE, digits = NA), "\n")
