# Times lme4's glmer on cbpp (Laplace) and VerbAgg (crossed); prints
# "case seconds_per_fit feval" (feval: the evaluations of the nAGQ > 0 stage).
# Used by benches/bench_glmer.py, which alternates it with multilevel's glmer round by round.
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
reps <- as.integer(args[1])
data(VerbAgg, package = "lme4")
data(cbpp, package = "lme4")
t <- system.time(for (i in seq_len(reps))
  f <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial))
cat("cbpp", t[["elapsed"]] / reps, f@optinfo$feval, "\n")
t <- system.time(f <- glmer(r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item),
                            VerbAgg, family = binomial))
cat("verbagg", t[["elapsed"]], f@optinfo$feval, "\n")
