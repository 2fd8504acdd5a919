# Export the datasets bundled with multilevel (python/multilevel/datasets/) from R, ONCE.
#
#   Rscript tests/reference/data/export_datasets.R        (from the repository root)
#
# Each dataset becomes <name>.csv (or .csv.gz) plus a sidecar <name>.json:
#   name, file, source (R package, object, version), description, nrow,
#   columns {column: "float64" | "int64" | "category"} in file order,
#   factors {column: [levels in R's level order]}, ordered [columns that are ordered factors].
# Numbers are written exactly: the shortest of 15, 16 or 17 significant digits that reads back
# to the same double; missing values are empty fields. The script re-reads every file and
# stops unless each column is identical to the R object. The Python side is checked by
# exactly in Python against the hexadecimal floats written by `--hex=DIR` (one <name>.hex.csv per
# dataset in DIR; C99 "%a" format, read with float.fromhex).
#
# The bundled CSVs are the single source of the data for the golden references: the fits in
# tests/reference/make_reference.R read these files back, so R and Python fit the same numbers.
# Do not rerun this unless a dataset must change; the references would have to be regenerated.

suppressPackageStartupMessages({
  library(lme4)
  library(nlme)
  library(plm)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
out_dir <- "python/multilevel/datasets"
stopifnot(dir.exists(out_dir))

ver <- function(pkg) as.character(packageVersion(pkg))

source(file.path("tests", "reference", "exact_format.R"))  # ref_format_exact

column_type <- function(v) {
  if (is.factor(v)) "category"
  else if (is.integer(v)) "int64"
  else if (is.double(v)) "float64"
  else stop("unsupported column type: ", class(v)[1])
}

write_dataset <- function(df, name, source, description, gzip = FALSE) {
  df <- as.data.frame(df)
  rownames(df) <- NULL
  cols <- lapply(df, function(v) {
    if (is.factor(v)) {
      s <- as.character(v)
      stopifnot(!any(grepl("[\",\n]", s[!is.na(s)])))
      s[is.na(s)] <- ""
      s
    } else if (is.integer(v)) {
      s <- as.character(v)
      s[is.na(s)] <- ""
      s
    } else {
      ref_format_exact(v)
    }
  })
  lines <- c(paste(names(df), collapse = ","), do.call(paste, c(cols, sep = ",")))
  file <- paste0(name, if (gzip) ".csv.gz" else ".csv")
  path <- file.path(out_dir, file)
  con <- if (gzip) gzfile(path, "wb") else file(path, "wb")
  writeLines(lines, con, sep = "\n")
  close(con)

  factors <- Filter(Negate(is.null), lapply(df, function(v) if (is.factor(v)) levels(v)))
  ordered <- names(df)[vapply(df, is.ordered, logical(1))]
  meta <- list(
    name = name,
    file = file,
    source = source,
    description = description,
    nrow = nrow(df),
    columns = lapply(df, column_type),
    factors = factors,
    ordered = I(ordered)
  )
  writeLines(toJSON(meta, auto_unbox = TRUE, pretty = TRUE), file.path(out_dir, paste0(name, ".json")))

  # Round trip in R: read back as text, rebuild, compare exactly.
  back <- read.csv(path, colClasses = "character", na.strings = "")
  stopifnot(identical(names(back), names(df)), nrow(back) == nrow(df))
  for (col in names(df)) {
    v <- df[[col]]
    b <- back[[col]]
    if (is.factor(v)) {
      b <- factor(b, levels = levels(v), ordered = is.ordered(v))
    } else if (is.integer(v)) {
      b <- as.integer(b)
    } else {
      b <- as.numeric(b)
    }
    if (!identical(b, v)) stop("round trip failed for ", name, "$", col)
  }
  cat(sprintf("%-11s %6d rows  %s\n", name, nrow(df), file))

  hex_arg <- grep("^--hex=", args, value = TRUE)
  if (length(hex_arg)) {
    # Exact values as C99 hexadecimal floats, for the Python-side round-trip check.
    num <- names(df)[vapply(df, is.numeric, logical(1))]
    hex <- lapply(df[num], function(v) ifelse(is.na(v), "", sprintf("%a", as.double(v))))
    hdir <- sub("^--hex=", "", hex_arg[1])
    dir.create(hdir, showWarnings = FALSE, recursive = TRUE)
    hpath <- file.path(hdir, paste0(name, ".hex.csv"))
    writeLines(c(paste(num, collapse = ","), do.call(paste, c(hex, sep = ","))), hpath)
    cat("  hex:", hpath, "\n")
  }
}

lme4_src <- function(obj) sprintf("R package lme4 %s, data object %s", ver("lme4"), obj)

write_dataset(sleepstudy, "sleepstudy", lme4_src("sleepstudy"),
  paste("Average reaction time (ms) per day for 18 subjects in a sleep deprivation study;",
        "days 0-1 adaptation, sleep restriction from day 2 (Belenky et al. 2003)."))

write_dataset(Dyestuff, "dyestuff", lme4_src("Dyestuff"),
  "Yield of dyestuff (grams of standard colour) from 5 preparations in each of 6 batches of an intermediate product.")

write_dataset(Penicillin, "penicillin", lme4_src("Penicillin"),
  "Diameter (mm) of the zone of inhibition for 6 penicillin samples on each of 24 plates: fully crossed factors.")

write_dataset(Pastes, "pastes", lme4_src("Pastes"),
  "Strength of a chemical paste: 2 assays of each of 3 casks from each of 10 delivery batches (cask nested in batch; sample = batch:cask).")

# High School and Beyond (1982), as used by Raudenbush & Bryk: student rows of nlme's
# MathAchieve with the school's sector from nlme's MathAchSchool. The school factor has the
# levels of MathAchSchool$School (school ids in sorted order); MathAchieve's own School factor is
# a groupedData ordered factor ordered by the schools' maximum score, which we do not keep.
# meanses is MathAchieve's MEANSES (the published school mean SES).
ma <- as.data.frame(MathAchieve)
school_levels <- levels(MathAchSchool$School)
stopifnot(setequal(school_levels, as.character(unique(ma$School))))
sector <- MathAchSchool$Sector[match(as.character(ma$School), as.character(MathAchSchool$School))]
stopifnot(!anyNA(sector))
hsb <- data.frame(
  mathach = ma$MathAch,
  ses = ma$SES,
  minority = factor(as.character(ma$Minority), levels = levels(ma$Minority)),
  sex = factor(as.character(ma$Sex), levels = levels(ma$Sex)),
  school = factor(as.character(ma$School), levels = school_levels),
  sector = factor(as.character(sector), levels = levels(MathAchSchool$Sector)),
  meanses = ma$MEANSES
)
write_dataset(hsb, "hsb",
  sprintf("R package nlme %s, data objects MathAchieve (students) and MathAchSchool (Sector)", ver("nlme")),
  paste("High School and Beyond 1982: mathematics achievement of 7,185 students in 160 schools",
        "(Raudenbush & Bryk); school ids as a factor in sorted order, sector from MathAchSchool,",
        "meanses the published school mean SES."))

write_dataset(InstEval, "insteval", lme4_src("InstEval"),
  paste("University lecture evaluations (ETH Zurich): 73,421 ratings y (1-5) by students s of",
        "lecturers d; studage, lectage ordered factors, service, dept factors."),
  gzip = TRUE)

write_dataset(cbpp, "cbpp", lme4_src("cbpp"),
  "Contagious bovine pleuropneumonia: new serological cases (incidence) among size zebu cattle in 15 herds over 4 periods.")

data("Grunfeld", package = "plm")
write_dataset(Grunfeld, "grunfeld", sprintf("R package plm %s, data object Grunfeld", ver("plm")),
  "Grunfeld investment panel: gross investment inv, firm value and capital stock for 10 US firms, 1935-1954.")

# The London exam data (Goldstein et al. 1993) as mlmRev ships it. Stata's analysis of the same
# pupils (Rabe-Hesketh & Skrondal's gcse.dta, `mixed gcse lrt || school: lrt`) uses gcse and lrt:
# normexam and standLRT, each multiplied by 10.
suppressPackageStartupMessages(library(mlmRev))
write_dataset(Exam, "exam", sprintf("R package mlmRev %s, data object Exam", ver("mlmRev")),
  paste("Inner London exam scores: 4,059 pupils in 65 schools; normexam the normalised GCSE exam",
        "score at 16, standLRT the standardised London Reading Test score at 11, with school",
        "gender (schgend), school average intake (schavg), verbal reasoning band (vr), intake",
        "band, sex, school type and a student id within school (Goldstein et al. 1993)."))
