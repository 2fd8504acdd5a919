# Shortest decimal (15, 16 or 17 significant digits) that reads back to the same double in R,
# with NA as an empty field. Shared by make_reference.R (reference data files) and
# data/export_datasets.R (the bundled CSVs); the Python side is checked bit for bit against
# R's values (tests/test_datasets.py).
ref_format_exact <- function(x) {
  out <- sprintf("%.15g", x)
  for (d in 16:17) {
    bad <- !is.na(x) & suppressWarnings(as.numeric(out)) != x
    if (!any(bad)) break
    out[bad] <- sprintf(paste0("%.", d, "g"), x[bad])
  }
  out[is.na(x)] <- ""
  stopifnot(all(is.na(x) | suppressWarnings(as.numeric(out)) == x))
  out
}
