# Times lme4's glmer on cbpp (Laplace) and VerbAgg (crossed); prints "case seconds_per_fit".
# Used by benches/bench_glmer.py, which alternates it with multilevel's glmer round by round.
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
reps <- as.integer(args[1])
data(VerbAgg, package = "lme4")
data(cbpp, package = "lme4")
t <- system.time(for (i in seq_len(reps))
  glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial))
cat("cbpp", t[["elapsed"]] / reps, "\n")
t <- system.time(glmer(r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item),
                       VerbAgg, family = binomial))
cat("verbagg", t[["elapsed"]], "\n")
