//! The cross-product pass in a fixed number of lanes: at memory speed, and the same to the last
//! bit for any number of threads.
//!
//! A chunk of n rows is cut into pieces of `balanced_piece_rows(n)` rows; lane l takes a
//! contiguous share of the pieces, pieces l P / L' .. (l + 1) P / L' for P pieces and
//! L' = min(LANES, P) lanes, and folds them, in row order, into one accumulator of its own
//! (`CrossProdAccumulator`) with one set of sort buffers (`PairScratch`). The lanes run on the
//! execution handle's threads (rayon, in the handle's pool), and are merged in lane order when
//! the accumulator is read. Which rows a lane sums, and in which order, depends on n only, never
//! on the number of threads, so A does not either. The lanes live as long as the accumulator:
//! a stream of batches adds each batch in lanes into the same accumulators, so the memory is
//! L' accumulators whatever the number of rows or batches, and no accumulator is allocated or
//! zeroed per piece.
//!
//! A sum over rows split into partial sums and added up is the usual parallel reduction
//! (MixedModels.jl and lme4 form A serially).

use rayon::prelude::*;

use crate::error::Result;
use crate::exec::Exec;
use crate::model::crossprod::{balanced_piece_rows, CrossProdAccumulator, RowChunk, PIECE_ROWS};
use crate::model::pairs::PairScratch;
use crate::model::remat::ReTermShape;

/// Number of lanes of the pass: a constant, so that the sums do not depend on the machine. Eight
/// keep up to eight threads busy; each lane costs one accumulator (its dense blocks are sized by
/// the numbers of levels).
pub const LANES: usize = 8;

/// One lane: its accumulator and the pair products' working memory.
struct Lane {
    acc: CrossProdAccumulator,
    scratch: PairScratch,
}

impl Lane {
    fn new(acc: CrossProdAccumulator) -> Lane {
        Lane {
            acc,
            scratch: PairScratch::default(),
        }
    }
}

/// A cross-product accumulator that adds chunks in lanes (see the module's documentation).
pub struct LaneAccumulator {
    /// Lane 0 always exists; lanes 1.. are created when a chunk is large enough to need them.
    lanes: Vec<Lane>,
}

impl LaneAccumulator {
    /// An empty accumulator for a model of these terms and p fixed-effect columns.
    pub fn new(shapes: &[ReTermShape], p: usize) -> LaneAccumulator {
        LaneAccumulator::from_accumulator(CrossProdAccumulator::new(shapes, p))
    }

    /// The lanes continuing from `acc` (as lane 0).
    pub fn from_accumulator(acc: CrossProdAccumulator) -> LaneAccumulator {
        LaneAccumulator {
            lanes: vec![Lane::new(acc)],
        }
    }

    /// The random-effects terms' shapes.
    pub fn shapes(&self) -> &[ReTermShape] {
        self.lanes[0].acc.shapes()
    }

    /// Number of fixed-effect columns.
    pub fn p(&self) -> usize {
        self.lanes[0].acc.p()
    }

    /// Whether the transform of D is taken from the first rows added
    /// (`CrossProdAccumulator::set_centre`); only before any row was added.
    pub fn set_centre(&mut self, centre: bool) -> Result<()> {
        self.lanes
            .iter_mut()
            .try_for_each(|lane| lane.acc.set_centre(centre))
    }

    /// The accumulator's first lane (its model, transform and centring).
    pub fn first(&self) -> &CrossProdAccumulator {
        &self.lanes[0].acc
    }

    /// Rows added, whatever their weights.
    pub fn n_rows(&self) -> usize {
        self.lanes.iter().map(|l| l.acc.n_rows()).sum()
    }

    /// Rows of non-zero weight.
    pub fn nobs(&self) -> usize {
        self.lanes.iter().map(|l| l.acc.nobs()).sum()
    }

    /// Adds a chunk in lanes on `exec`'s threads, in pieces of `balanced_piece_rows` rows.
    /// The chunk is checked first; a bad chunk adds nothing.
    pub fn add(&mut self, chunk: &RowChunk, exec: &Exec) -> Result<()> {
        let piece_rows = balanced_piece_rows(chunk.nrows(), PIECE_ROWS);
        exec.install(|| self.add_in_pool(chunk, piece_rows))
    }

    /// Adds a chunk in lanes, in pieces of `piece_rows` rows, on the rayon pool the caller
    /// installed. The chunk is checked first; a bad chunk adds nothing.
    pub fn add_in_pool(&mut self, chunk: &RowChunk, piece_rows: usize) -> Result<()> {
        let (shapes, p) = (self.shapes(), self.p());
        let layout = chunk.check(shapes, p)?;
        if self.n_rows() == 0 {
            // A centring accumulator's first rows give every lane its transform.
            if let Some(t) = self.lanes[0].acc.first_transform(chunk, &layout) {
                for lane in &mut self.lanes {
                    lane.acc.transform.clone_from(&t);
                }
            }
        }
        let n = chunk.nrows();
        let piece_rows = piece_rows.max(1);
        let pieces = n.div_ceil(piece_rows).max(1);
        let used = pieces.min(LANES);
        while self.lanes.len() < used {
            let mut acc = CrossProdAccumulator::new(self.shapes(), self.p());
            acc.transform = self.lanes[0].acc.transform.clone();
            self.lanes.push(Lane::new(acc));
        }
        let add_lane = |l: usize, lane: &mut Lane| {
            for piece in l * pieces / used..(l + 1) * pieces / used {
                // An interrupt stops the pass between two pieces (a few milliseconds each).
                if crate::exec::interrupted() {
                    return;
                }
                let start = piece * piece_rows;
                let end = (start + piece_rows).min(n);
                // The whole chunk was checked above, so the pieces need not be again.
                let rows = chunk.rows(&layout, start, end);
                lane.acc.add_checked(&rows, &layout, &mut lane.scratch);
            }
        };
        if used == 1 {
            add_lane(0, &mut self.lanes[0]);
        } else {
            self.lanes[..used]
                .par_iter_mut()
                .enumerate()
                .for_each(|(l, lane)| add_lane(l, lane));
        }
        crate::exec::check_interrupt()
    }

    /// Merges lanes 1.. into lane 0, in lane order, and drops them; returns the one
    /// accumulator left. Reading the accumulator (merging it, serialising it, building a
    /// problem) collapses it first.
    pub fn collapse(&mut self) -> &CrossProdAccumulator {
        let mut rest = self.lanes.split_off(1);
        let first = &mut self.lanes[0];
        for lane in rest.drain(..) {
            first
                .acc
                .merge_with(&lane.acc, &mut first.scratch)
                .expect("the lanes of one accumulator share its model");
        }
        &self.lanes[0].acc
    }

    /// The one accumulator of all rows added (the lanes merged in lane order).
    pub fn into_accumulator(mut self) -> CrossProdAccumulator {
        self.collapse();
        self.lanes.swap_remove(0).acc
    }

    /// Adds another accumulator's rows: this one's lanes are collapsed, then each of the
    /// other's lanes is merged in, in lane order. Models that differ are an error and change
    /// nothing.
    pub fn merge(&mut self, other: &LaneAccumulator) -> Result<()> {
        self.lanes[0].acc.check_same_model(&other.lanes[0].acc)?;
        self.collapse();
        let first = &mut self.lanes[0];
        for lane in &other.lanes {
            first.acc.merge_with(&lane.acc, &mut first.scratch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lanes_take_contiguous_shares_of_the_pieces() {
        // 10 pieces over 8 lanes: 1 or 2 pieces each, in order, every piece once.
        let (pieces, used) = (10usize, 8usize);
        let shares: Vec<Vec<usize>> = (0..used)
            .map(|l| (l * pieces / used..(l + 1) * pieces / used).collect())
            .collect();
        let flat: Vec<usize> = shares.concat();
        assert_eq!(flat, (0..pieces).collect::<Vec<_>>());
        assert!(shares.iter().all(|s| (1..=2).contains(&s.len())));
    }
}
