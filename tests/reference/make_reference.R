# Regenerate every golden reference of multilevel from R. Run from the repository root:
#
#   Rscript tests/reference/make_reference.R              # everything
#   Rscript tests/reference/make_reference.R lmm          # only tests/reference/cases_lmm.R
#   Rscript tests/reference/make_reference.R econ         # only tests/reference/cases_econ.R
#   Rscript tests/reference/make_reference.R contextual   # only tests/reference/cases_contextual.R
#   Rscript tests/reference/make_reference.R lmer_robust  # only tests/reference/cases_lmer_robust.R
#   Rscript tests/reference/make_reference.R inference    # only tests/reference/cases_inference.R
#   Rscript tests/reference/make_reference.R glmm         # only tests/reference/cases_glmm.R
#   Rscript tests/reference/make_reference.R influence    # only tests/reference/cases_influence.R
#   Rscript tests/reference/make_reference.R hostile      # only tests/reference/cases_hostile.R
#   Rscript tests/reference/make_reference.R robust       # only tests/reference/cases_robust.R
#   Rscript tests/reference/make_reference.R leverage     # only tests/reference/cases_leverage.R
#   Rscript tests/reference/make_reference.R offset       # only tests/reference/cases_offset.R
#   Rscript tests/reference/make_reference.R influence_obs  # only cases_influence_obs.R
#   Rscript tests/reference/make_reference.R dyestuff_reml pastes_reml   # some lmm cases
#
# Tests never need R; regenerating the references does (R 4.2 with lme4, nlme, lmerTest,
# pbkrtest, plm, sandwich, clubSandwich, jsonlite).
#
# Data: the fits read the bundled CSVs back (python/multilevel/datasets/<name>.csv[.gz], with
# their sidecar <name>.json for factor levels) or extra CSVs in tests/reference/data/ (same
# format, each with a sidecar), never R's in-memory objects, so that R and Python fit exactly
# the same numbers. The bundled CSVs themselves were exported once by
# tests/reference/data/export_datasets.R.
#
# Numbers: jsonlite (1.8) prints at most 15 significant digits, so this driver has its own JSON
# writer: every double is written with sprintf("%.17g") (an exact round trip), NA/NaN/Inf as
# null, and each file is parsed back and compared number by number before it is kept.
#
# Helpers defined here for the case files (all prefixed ref_):
#   ref_read_dataset(name)            bundled dataset as a data.frame, factors in the sidecar's order
#   ref_read_data_file(path)          a CSV + sidecar from tests/reference/data/
#   ref_write_data_file(df, stem, description)   write tests/reference/data/<stem>.csv + .json
#   ref_write_json(x, path)           write x with the exact JSON writer (checked round trip)
#   ref_versions(pkgs)                list(R = "4.2.2", <pkg> = version, ...)
#   ref_rows(m)                       matrix -> list of rows (row-major nested array)
#   ref_wanted(case, group)           TRUE if the command line selects this case

if (!file.exists(file.path("tests", "reference", "make_reference.R"))) {
  stop("run from the repository root: Rscript tests/reference/make_reference.R")
}

suppressPackageStartupMessages({
  library(jsonlite)
})

ref_args <- commandArgs(trailingOnly = TRUE)

ref_wanted <- function(case, group = "lmm") {
  if (length(ref_args) == 0) return(TRUE)
  group %in% ref_args || case %in% ref_args
}

ref_versions <- function(pkgs = c("lme4", "Matrix")) {
  out <- list(R = paste(R.version$major, R.version$minor, sep = "."))
  for (p in pkgs) out[[p]] <- as.character(packageVersion(p))
  out
}

# ------------------------------------------------------------------------------ data files

ref_bundled_dir <- file.path("python", "multilevel", "datasets")
ref_data_dir <- file.path("tests", "reference", "data")

source(file.path("tests", "reference", "exact_format.R"))  # ref_format_exact

ref_read_csv_sidecar <- function(csv_path, meta) {
  types <- unlist(meta$columns)
  df <- read.csv(csv_path, colClasses = "character", na.strings = "", check.names = FALSE)
  stopifnot(identical(names(df), names(types)))
  ordered <- unlist(meta$ordered)
  for (col in names(types)) {
    v <- df[[col]]
    df[[col]] <- switch(types[[col]],
      float64 = as.numeric(v),
      int64 = as.integer(v),
      category = {
        lev <- unlist(meta$factors[[col]])
        f <- factor(v, levels = lev, ordered = col %in% ordered)
        stopifnot(identical(is.na(f), is.na(v)))
        f
      },
      stop("unknown column type ", types[[col]])
    )
  }
  if (!is.null(meta$nrow)) stopifnot(nrow(df) == meta$nrow)
  df
}

ref_read_dataset <- function(name) {
  meta <- fromJSON(file.path(ref_bundled_dir, paste0(name, ".json")), simplifyVector = FALSE)
  ref_read_csv_sidecar(file.path(ref_bundled_dir, meta$file), meta)
}

ref_read_data_file <- function(path) {
  stem <- sub("\\.csv(\\.gz)?$", "", basename(path))
  meta <- fromJSON(file.path(dirname(path), paste0(stem, ".json")), simplifyVector = FALSE)
  ref_read_csv_sidecar(path, meta)
}

# Write df as tests/reference/data/<stem>.csv (NA = empty field) with a sidecar <stem>.json in
# the bundled datasets' format; returns the repo-relative path. Stops unless it reads back
# identical.
ref_write_data_file <- function(df, stem, description) {
  df <- as.data.frame(df)
  rownames(df) <- NULL
  types <- lapply(df, function(v) {
    if (is.factor(v)) "category" else if (is.integer(v)) "int64"
    else if (is.double(v)) "float64" else stop("unsupported column type")
  })
  cols <- lapply(df, function(v) {
    if (is.double(v)) return(ref_format_exact(v))
    s <- as.character(v)
    stopifnot(!any(grepl("[\",\n]", s[!is.na(s)])))
    s[is.na(s)] <- ""
    s
  })
  path <- file.path(ref_data_dir, paste0(stem, ".csv"))
  lines <- c(paste(names(df), collapse = ","), do.call(paste, c(cols, sep = ",")))
  con <- file(path, "wb")
  writeLines(lines, con, sep = "\n")
  close(con)
  meta <- list(
    name = stem, file = paste0(stem, ".csv"), source = "tests/reference/make_reference.R",
    description = description, nrow = nrow(df), columns = types,
    factors = Filter(Negate(is.null), lapply(df, function(v) if (is.factor(v)) levels(v))),
    ordered = I(names(df)[vapply(df, is.ordered, logical(1))])
  )
  writeLines(toJSON(meta, auto_unbox = TRUE, pretty = TRUE),
             file.path(ref_data_dir, paste0(stem, ".json")))
  back <- ref_read_data_file(path)
  if (!identical(back, df)) stop("round trip failed for ", path)
  path
}

# ------------------------------------------------------------------------------ JSON writer

ref_rows <- function(m) {
  m <- as.matrix(m)
  lapply(seq_len(nrow(m)), function(i) I(unname(as.double(m[i, ]))))
}

ref_json_scalars <- function(x) {
  if (is.factor(x)) x <- as.character(x)
  if (is.character(x)) {
    out <- vapply(x, function(s) as.character(toJSON(s, auto_unbox = TRUE)), "")
    out[is.na(x)] <- "null"
    return(unname(out))
  }
  if (is.logical(x)) return(ifelse(is.na(x), "null", ifelse(x, "true", "false")))
  if (is.integer(x)) return(ifelse(is.na(x), "null", as.character(x)))
  if (is.double(x)) {
    s <- sprintf("%.17g", x)
    s[!is.finite(x)] <- "null"
    return(s)
  }
  stop("cannot write ", class(x)[1], " as JSON")
}

# Named list -> object; unnamed list -> array; atomic of length 1 -> scalar unless wrapped in
# I() (then always an array); other atomic vectors -> arrays (names dropped); NULL -> null.
ref_to_json <- function(x, indent = "") {
  inner <- paste0(indent, "  ")
  if (is.null(x)) return("null")
  if (is.data.frame(x)) x <- as.list(x)
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    parts <- vapply(x, ref_to_json, "", indent = inner)
    simple <- all(!vapply(x, is.list, logical(1))) && sum(nchar(parts)) < 100
    if (!is.null(names(x))) {
      stopifnot(all(nzchar(names(x))), !anyDuplicated(names(x)))
      keys <- ref_json_scalars(names(x))
      body <- paste0(keys, ": ", parts)
    } else {
      body <- parts
    }
    open <- if (is.null(names(x))) "[" else "{"
    close <- if (is.null(names(x))) "]" else "}"
    if (simple && is.null(names(x))) return(paste0(open, paste(body, collapse = ", "), close))
    return(paste0(open, "\n", inner, paste(body, collapse = paste0(",\n", inner)), "\n", indent, close))
  }
  s <- ref_json_scalars(unclass(x))
  if (length(x) == 1 && !inherits(x, "AsIs")) return(s)
  paste0("[", paste(s, collapse = ", "), "]")
}

ref_numbers <- function(x) {
  if (is.null(x)) return(numeric(0))
  if (is.list(x)) return(unlist(lapply(unname(x), ref_numbers), use.names = FALSE))
  if (is.numeric(x)) {
    x <- as.double(x)
    x[!is.finite(x)] <- NA_real_
    return(x)
  }
  numeric(0)
}

ref_write_json <- function(x, path) {
  txt <- ref_to_json(x)
  back <- fromJSON(txt, simplifyVector = FALSE)
  a <- ref_numbers(x)
  b <- ref_numbers(lapply(back, function(v) v))
  # null comes back as NULL and vanishes from b: compare the finite values in order.
  if (!identical(a[!is.na(a)], b[!is.na(b)])) stop("numbers do not round-trip in ", path)
  dir.create(dirname(path), showWarnings = FALSE, recursive = TRUE)
  con <- file(path, "wb")
  writeLines(txt, con, sep = "\n")
  close(con)
  message("wrote ", path)
  invisible(path)
}

# ------------------------------------------------------------------------------ the cases

if (length(ref_args) == 0 || !all(ref_args %in% c("econ", "lmer_robust", "inference", "influence", "hostile", "leverage", "offset", "influence_obs"))) {
  source(file.path("tests", "reference", "cases_lmm.R"))
}
econ <- file.path("tests", "reference", "cases_econ.R")
if (file.exists(econ) && (length(ref_args) == 0 || "econ" %in% ref_args)) {
  source(econ)
}
# Contextual effects (cvar, dvar): needs cases_lmm.R's lmm_case, sourced above.
contextual <- file.path("tests", "reference", "cases_contextual.R")
if (file.exists(contextual) && (length(ref_args) == 0 || "contextual" %in% ref_args)) {
  source(contextual)
}
lmer_robust <- file.path("tests", "reference", "cases_lmer_robust.R")
if (file.exists(lmer_robust) && (length(ref_args) == 0 || "lmer_robust" %in% ref_args)) {
  source(lmer_robust)
}
inference <- file.path("tests", "reference", "cases_inference.R")
if (file.exists(inference) && (length(ref_args) == 0 || "inference" %in% ref_args ||
                               any(startsWith(ref_args, "nlme_")))) {
  source(inference)
}
glmm <- file.path("tests", "reference", "cases_glmm.R")
if (file.exists(glmm) && (length(ref_args) == 0 || "glmm" %in% ref_args ||
                          any(startsWith(ref_args, "glmm_")))) {
  source(glmm)
}
influence <- file.path("tests", "reference", "cases_influence.R")
if (file.exists(influence) && (length(ref_args) == 0 || "influence" %in% ref_args)) {
  source(influence)
}
hostile <- file.path("tests", "reference", "cases_hostile.R")
if (file.exists(hostile) && (length(ref_args) == 0 || "hostile" %in% ref_args)) {
  source(hostile)
}
for (extra in c("leverage", "offset", "influence_obs")) {
  path <- file.path("tests", "reference", paste0("cases_", extra, ".R"))
  if (file.exists(path) && (length(ref_args) == 0 || extra %in% ref_args)) source(path)
}
robust <- file.path("tests", "reference", "cases_robust.R")
if (file.exists(robust) && (length(ref_args) == 0 || "robust" %in% ref_args)) {
  source(robust)
}
