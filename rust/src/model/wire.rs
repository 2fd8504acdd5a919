//! The serialised cross-product accumulator: a partial sum over rows that a Dask partition or
//! a Spark task computes, sends as bytes, and that the client merges (a tree reduction).
//!
//! Layout, version 2 (version 1 had no transform: its accumulators were of the raw rows). Every integer is an unsigned 64-bit little-endian word (u64), every real
//! an IEEE 754 binary64 little-endian word (f64), so the whole buffer is a sequence of 8-byte
//! words:
//!
//! ```text
//!   magic      8 bytes  "MLVLACC\0"
//!   version    u64      2
//!   flags      u64      bit 0: the start moments follow A; bit 1: the transform is taken
//!                       from the first rows added (centring); other bits 0
//!   p          u64      fixed-effect columns (D = [X y] has p + 1)
//!   terms      u64      number of random-effects terms T
//!   per term   u64 n_levels, u64 q (>= 1), u64 diagonal (0 or 1)
//!   transform  the change of variables of D the blocks hold (`model::transform`):
//!              u64 pivot (0: none; 1 + the intercept's column), u64 k (0 or p + 1),
//!              k f64 shifts, k f64 scales (finite, > 0), f64 log2 of the weights' factor
//!   n_rows     u64      rows added
//!   nobs       u64      rows of non-zero weight
//!   sum_log_w  f64
//!   dd         (p + 1)^2 f64, D'WD column-major, lower triangle (the upper one is 0)
//!   per term k diag: n_levels q q f64 (Z_k'WZ_k, level-major q x q column-major blocks)
//!              dz: (p + 1) n_levels q f64 (D'WZ_k, column-major)
//!   per pair   k = 1..T, j = 0..k: u64 m, m u64 keys (strictly increasing, each below
//!              n_levels_j n_levels_k; key = level_j n_levels_k + level_k), m q_k q_j f64
//!   moments    (when flags bit 0) u64 n, f64 mean, f64 m2, u64 valid, T u64 ones,
//!              T (T - 1) / 2 u64 same (pairs in the order above), per term n_levels f64 sums
//!              then n_levels u64 counts
//!   checksum   u64      FNV-1a (64-bit) of every byte before it
//! ```
//!
//! Reading checks the magic, the version, the flags, that the numbers of levels and columns
//! give exactly the buffer's length (before anything of that size is allocated), the keys'
//! order and range, that the counts of each term add up to the moments' rows, and the checksum;
//! any failure is an error that says which. Writing what was read gives the same bytes.

use crate::error::{LmmError, Result};
use crate::model::crossprod::CrossProdAccumulator;
use crate::model::moments::StartMoments;
use crate::model::pairs::PairAccumulator;
use crate::model::remat::ReTermShape;
use crate::model::transform::Transform;

/// The first 8 bytes of a serialised accumulator.
pub const MAGIC: [u8; 8] = *b"MLVLACC\0";
/// The layout version this code writes and reads.
pub const VERSION: u64 = 2;
const FLAG_MOMENTS: u64 = 1;
const FLAG_CENTRE: u64 = 2;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The accumulator as bytes (see the module's documentation).
pub fn to_bytes(acc: &CrossProdAccumulator) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(8 * words(acc)));
    w.0.extend_from_slice(&MAGIC);
    w.u(VERSION);
    let moments = if acc.moments.is_some() {
        FLAG_MOMENTS
    } else {
        0
    };
    w.u(moments | if acc.centre { FLAG_CENTRE } else { 0 });
    w.u(acc.p as u64);
    w.u(acc.shapes.len() as u64);
    for s in &acc.shapes {
        w.u(s.n_levels as u64);
        w.u(s.q as u64);
        w.u(u64::from(s.diagonal));
    }
    let t = &acc.transform;
    w.u(t.pivot.map_or(0, |j| j as u64 + 1));
    w.u(t.shift.len() as u64);
    w.f(&t.shift);
    w.f(&t.scale);
    w.f(&[t.w_log2]);
    w.u(acc.n_rows as u64);
    w.u(acc.nobs as u64);
    w.f(&[acc.sum_log_w]);
    w.f(&acc.dd);
    for k in 0..acc.shapes.len() {
        w.f(&acc.diag[k]);
        w.f(&acc.dz[k]);
    }
    for row in &acc.pairs {
        for pair in row {
            w.u(pair.keys.len() as u64);
            for &key in &pair.keys {
                w.u(key);
            }
            w.f(&pair.values);
        }
    }
    if let Some(m) = &acc.moments {
        w.u(m.n);
        w.f(&[m.mean, m.m2]);
        w.u(u64::from(m.valid));
        for &b in m.ones.iter().chain(&m.same) {
            w.u(u64::from(b));
        }
        for (sums, counts) in m.sums.iter().zip(&m.counts) {
            w.f(sums);
            for &c in counts {
                w.u(c);
            }
        }
    }
    let checksum = fnv1a(&w.0);
    w.u(checksum);
    w.0
}

/// Number of 8-byte words `to_bytes` writes for `acc` (for the buffer's capacity).
fn words(acc: &CrossProdAccumulator) -> usize {
    let pd = acc.p + 1;
    let blocks: usize = acc.diag.iter().chain(&acc.dz).map(Vec::len).sum();
    let pairs: usize = acc
        .pairs
        .iter()
        .flatten()
        .map(|pair| 1 + pair.keys.len() + pair.values.len())
        .sum();
    let moments = acc.moments.as_ref().map_or(0, |m| {
        4 + m.ones.len() + m.same.len() + 2 * m.sums.iter().map(Vec::len).sum::<usize>()
    });
    let transform = 3 + 2 * acc.transform.shift.len();
    6 + 3 * acc.shapes.len() + transform + 3 + pd * pd + blocks + pairs + moments + 1
}

struct Writer(Vec<u8>);

impl Writer {
    fn u(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f(&mut self, v: &[f64]) {
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn bad(what: impl std::fmt::Display) -> LmmError {
    LmmError::Shape(format!("not a valid serialised accumulator: {what}"))
}

/// Reads 8-byte words from a buffer whose length was checked against its header.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn word(&mut self, what: &str) -> Result<[u8; 8]> {
        let end = self.at + 8;
        let w = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| bad(format!("the buffer ends inside {what} (byte {})", self.at)))?;
        self.at = end;
        Ok(w.try_into().expect("8 bytes"))
    }
    fn u(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.word(what)?))
    }
    fn usize(&mut self, what: &str) -> Result<usize> {
        let v = self.u(what)?;
        usize::try_from(v).map_err(|_| bad(format!("{what} = {v} does not fit this machine")))
    }
    fn flag(&mut self, what: &str) -> Result<bool> {
        match self.u(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(bad(format!("{what} is {v}, not 0 or 1"))),
        }
    }
    fn f(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.word(what)?))
    }
    fn fs(&mut self, n: usize, what: &str) -> Result<Vec<f64>> {
        (0..n).map(|_| self.f(what)).collect()
    }
    fn fill(&mut self, out: &mut [f64], what: &str) -> Result<()> {
        for v in out {
            *v = self.f(what)?;
        }
        Ok(())
    }
}

/// Checked arithmetic for sizes read from a header.
fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| bad("the header's sizes overflow"))
}

/// Reads an accumulator written by `to_bytes` (see the module's documentation for the checks).
pub fn from_bytes(bytes: &[u8]) -> Result<CrossProdAccumulator> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        return Err(bad("it does not start with the magic bytes \"MLVLACC\\0\""));
    }
    if !bytes.len().is_multiple_of(8) || bytes.len() < 16 {
        return Err(bad(format!(
            "{} bytes is not a whole number of 8-byte words",
            bytes.len()
        )));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let mut r = Reader { bytes: body, at: 8 };
    let version = r.u("the version")?;
    if version != VERSION {
        let why = if version == 1 {
            " (version 1 holds the raw rows' cross-products, version 2 those of the centred \
             rows and their shifts: partial accumulators must all come from the same \
             multilevel)"
        } else {
            ""
        };
        return Err(bad(format!(
            "layout version {version}; this multilevel reads version {VERSION}{why}"
        )));
    }
    let checksum = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
    if checksum != fnv1a(body) {
        return Err(bad(
            "the checksum does not match (the bytes were changed or cut)",
        ));
    }
    let flags = r.u("the flags")?;
    if flags & !(FLAG_MOMENTS | FLAG_CENTRE) != 0 {
        return Err(bad(format!("unknown flags {flags:#x}")));
    }
    let p = r.usize("p")?;
    let nt = r.usize("the number of terms")?;
    if mul(nt, 24)? > body.len() {
        return Err(bad(format!(
            "{nt} terms do not fit in {} bytes",
            bytes.len()
        )));
    }
    let mut shapes = Vec::with_capacity(nt);
    for k in 0..nt {
        let n_levels = r.usize("a number of levels")?;
        let q = r.usize("a number of columns")?;
        let diagonal = r.flag("a diagonal flag")?;
        if q == 0 {
            return Err(bad(format!("term {k} has q = 0")));
        }
        shapes.push(ReTermShape {
            n_levels,
            q,
            diagonal,
        });
    }
    // The dense part's size, checked against the buffer before anything is allocated.
    let pd = p.checked_add(1).ok_or_else(|| bad("p overflows"))?;
    let transform = read_transform(&mut r, pd)?;
    let mut dense = mul(pd, pd)?;
    for s in &shapes {
        dense = dense
            .checked_add(mul(mul(s.n_levels, s.q)?, s.q + pd)?)
            .ok_or_else(|| bad("the header's sizes overflow"))?;
    }
    if mul(dense, 8)? > body.len() - r.at {
        return Err(bad(format!(
            "the header describes {dense} values of dense blocks, more than the buffer holds"
        )));
    }
    let mut acc = CrossProdAccumulator::new(&shapes, p);
    acc.transform = transform;
    acc.centre = flags & FLAG_CENTRE != 0;
    acc.n_rows = r.usize("the number of rows")?;
    acc.nobs = r.usize("the number of observations")?;
    acc.sum_log_w = r.f("the sum of log weights")?;
    r.fill(&mut acc.dd, "D'WD")?;
    for k in 0..nt {
        r.fill(&mut acc.diag[k], "Z'WZ")?;
        r.fill(&mut acc.dz[k], "D'WZ")?;
    }
    for k in 1..nt {
        for j in 0..k {
            acc.pairs[k][j] = read_pair(&mut r, &shapes, k, j)?;
        }
    }
    if flags & FLAG_MOMENTS != 0 {
        acc.moments = Some(read_moments(&mut r, &shapes)?);
    } else if acc.moments.is_some() {
        return Err(bad(
            "the start moments of a model of scalar terms are missing",
        ));
    }
    if r.at != body.len() {
        return Err(bad(format!("{} bytes are left over", body.len() - r.at)));
    }
    if acc.nobs > acc.n_rows {
        return Err(bad(format!(
            "{} observations in {} rows",
            acc.nobs, acc.n_rows
        )));
    }
    Ok(acc)
}

/// The transform section (see the module's documentation), for D of `pd` columns.
fn read_transform(r: &mut Reader, pd: usize) -> Result<Transform> {
    let pivot = r.usize("the transform's pivot")?;
    let k = r.usize("the transform's length")?;
    if k != 0 && k != pd {
        return Err(bad(format!(
            "the transform has {k} columns, D has {pd} (0 or {pd} expected)"
        )));
    }
    if pivot >= pd || (pivot > 0 && k == 0) {
        return Err(bad(format!(
            "the transform's pivot {pivot} is not 0 or a column of X"
        )));
    }
    if mul(k, 16)? > r.bytes.len() - r.at {
        return Err(bad("the transform does not fit in the buffer"));
    }
    let shift = r.fs(k, "the transform's shifts")?;
    let scale = r.fs(k, "the transform's scales")?;
    let w_log2 = r.f("the transform's weight factor")?;
    if shift.iter().chain(&[w_log2]).any(|v| !v.is_finite())
        || scale.iter().any(|&s| !(s.is_finite() && s > 0.0))
    {
        return Err(bad(
            "the transform has a shift, scale or weight factor that is not finite",
        ));
    }
    Ok(Transform {
        pivot: pivot.checked_sub(1),
        shift,
        scale,
        w_log2,
    })
}

fn read_pair(
    r: &mut Reader,
    shapes: &[ReTermShape],
    k: usize,
    j: usize,
) -> Result<PairAccumulator> {
    let what = format!("the blocks of terms ({k}, {j})");
    let m = r.usize(&what)?;
    let bs = shapes[k].q * shapes[j].q;
    if mul(m, 1 + bs)? > (r.bytes.len() - r.at) / 8 {
        return Err(bad(format!("{what}: {m} blocks do not fit in the buffer")));
    }
    let limit = (shapes[j].n_levels as u64).saturating_mul(shapes[k].n_levels as u64);
    let mut keys = Vec::with_capacity(m);
    for _ in 0..m {
        let key = r.u(&what)?;
        if key >= limit || keys.last().is_some_and(|&last| last >= key) {
            return Err(bad(format!(
                "{what}: key {key} out of order or outside 0..{limit}"
            )));
        }
        keys.push(key);
    }
    let values = r.fs(m * bs, &what)?;
    Ok(PairAccumulator { keys, values })
}

fn read_moments(r: &mut Reader, shapes: &[ReTermShape]) -> Result<StartMoments> {
    let mut m = StartMoments::new(shapes)
        .ok_or_else(|| bad("start moments for a model with a term of more than one column"))?;
    m.n = r.u("the moments' rows")?;
    m.mean = r.f("the moments' mean")?;
    m.m2 = r.f("the moments' sum of squares")?;
    m.valid = r.flag("the moments' validity")?;
    for b in m.ones.iter_mut().chain(m.same.iter_mut()) {
        *b = r.flag("a flag of the moments")?;
    }
    for k in 0..shapes.len() {
        r.fill(&mut m.sums[k], "the sums by level")?;
        for c in &mut m.counts[k] {
            *c = r.u("the counts by level")?;
        }
        let total = m.counts[k].iter().try_fold(0u64, |s, &c| s.checked_add(c));
        if m.valid && total != Some(m.n) {
            return Err(bad(format!(
                "the counts by level of term {k} do not add up to the {} rows",
                m.n
            )));
        }
    }
    Ok(m)
}
