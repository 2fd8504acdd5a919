# Prior weights in non-binomial glmer fits (tests/test_glmer_prior_weights.py).
suppressMessages(library(lme4))
d <- cbpp; d$w <- 2; d$w2 <- rep(c(1,3), 28)
f <- glmer(incidence ~ period + (1|herd), d, family=poisson, weights=w2)
cat(sprintf("%.12f", c(deviance=-2*logLik(f), fixef(f), getME(f,"theta"))), "\n")
f <- glmer(incidence ~ period + (1|herd), d, family=Gamma(link="log"), weights=w2, subset=incidence>0)
cat(sprintf("%.12f", c(-2*logLik(f), fixef(f), getME(f,"theta"), sigma(f))), "\n")
