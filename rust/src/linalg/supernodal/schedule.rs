//! The parallel schedule of the supernodal factor: which thread does what, fixed once per model
//!
//! ```text
//!   elimination tree of supernodes  =  independent subtrees (groups, one thread each)
//!                                      + the supernodes above them (top: column chunks,
//!                                        narrow subtrees side by side, the rest by the team)
//! ```
//!
//! The work of each supernode is estimated (in units of about a nanosecond, `COST_FMA`); whole
//! subtrees are dealt to groups of about equal work, longest first (`make_schedule`); the top
//! supernodes are assembled in two passes split by column chunks (`plan_top_chunks`), their
//! narrow subtrees finished side by side (`group_narrow_tops`), and the panels laid out group by
//! group so that a thread reads a contiguous region. The split changes who computes a value,
//! never how: every sum is taken in the same order whatever the number of threads. CHOLMOD's
//! supernodal factor (lme4) parallelises only inside its dense BLAS calls; MixedModels.jl's
//! blocked factor likewise through BLAS.

use super::symbolic::{Pull, Symbolic};
use super::TEAM_FACTOR_MIN;
use crate::error::{LmmError, Result};

/// Panels of at least `TEAM_SOLVE_COLUMNS` columns and `TEAM_SOLVE_ROWS` rows below them are
/// factored by the team too: one thread factors the diagonal block, all solve the rows below.
/// (In InstEval, 7 of the 15 small top supernodes: 1 to 2% of an evaluation, measured paired.)
const TEAM_SOLVE_COLUMNS: usize = 16;
const TEAM_SOLVE_ROWS: usize = 256;

/// Whether the team factors a top supernode of k columns and height m (see `dense_llt`).
pub(super) fn team_factors(k: usize, m: usize) -> bool {
    k >= TEAM_FACTOR_MIN || (k >= TEAM_SOLVE_COLUMNS && m - k >= TEAM_SOLVE_ROWS)
}

/// Supernodes above the independent subtrees are split between threads by columns into chunks
/// of at least this estimated work (see `COST_FMA`, about 25 microseconds).
const CHUNK_WORK: f64 = 25_000.0;

/// Estimated cost of the parts of the numeric step, in units of one scattered update (about a
/// nanosecond): a multiply-add inside a dense kernel, the fixed cost of a column-by-column
/// update, and of zeroing or assembling one value.
pub(super) const COST_FMA: f64 = 1.0 / 20.0;
pub(super) const COST_PULL: f64 = 4.0;
const COST_ZERO: f64 = 1.0 / 8.0;

/// Factors estimated to cost less than this (in the units above, about a millisecond) run on
/// one thread: below it, waking and joining threads cost more than they save.
pub(super) const PARALLEL_MIN_WORK: f64 = 1.0e6;

/// Which supernodes run where. The panels of group g occupy `values[region[g]..region[g + 1]]`
/// and those of the top supernodes `values[region[groups.len()]..]`.
#[derive(Clone, Debug, Default)]
pub(super) struct Schedule {
    /// Supernodes of each group of independent subtrees, in increasing order.
    pub(super) groups: Vec<Vec<u32>>,
    /// The supernodes above the groups, in increasing order.
    pub(super) top: Vec<u32>,
    pub(super) region: Vec<usize>,
    /// Threads the schedule was made for.
    pub(super) threads: usize,
    /// Column chunks of top supernode `top[i]`: their bounds are `chunks[chunk_ptr[i]..
    /// chunk_ptr[i + 1]]` (from 0 to its width), from `Symbolic::column_chunks`.
    pub(super) chunk_ptr: Vec<usize>,
    pub(super) chunks: Vec<u32>,
    /// The (index in `top`, chunk) pairs of the first pass over the top supernodes, heaviest
    /// supernode first.
    pub(super) ready_items: Vec<(u32, u32)>,
    /// Whether top supernode `top[i]` receives updates from top supernodes (a second pass).
    pub(super) late: Vec<bool>,
    /// Independent subtrees of narrow top supernodes (indices into `top`, increasing, heaviest
    /// subtree first): after the first pass, each is finished (second pass and factor) by one
    /// thread, while the others finish the other subtrees (see `group_narrow_tops`).
    pub(super) top_groups: Vec<Vec<u32>>,
    /// The other top supernodes (indices into `top`, increasing), finished one at a time by
    /// the whole team after the groups.
    pub(super) sequential: Vec<u32>,
}

impl Symbolic {
    /// The schedule for `threads` threads, from the estimated work of each supernode (its
    /// assembly, `col_work`, zeroing its panel, and its dense factor) and the elimination tree
    /// (`owner_sn`: the supernode of each column).
    pub(super) fn tree_schedule(
        &self,
        owner_sn: &[u32],
        threads: usize,
        parallel_min_work: f64,
    ) -> Schedule {
        let ns = self.n_supernodes();
        let work: Vec<f64> = (0..ns)
            .map(|s| {
                let (k, m) = (self.cols(s) as f64, self.height(s) as f64);
                let assembly: f64 = self.col_work[self.begin[s]..self.begin[s + 1]].iter().sum();
                assembly + m * k * COST_ZERO + (k * k * k / 3.0 + (m - k) * k * k) * COST_FMA
            })
            .collect();
        let parent: Vec<usize> = (0..ns)
            .map(|s| {
                self.pattern(s)
                    .first()
                    .map_or(usize::MAX, |&r| owner_sn[r as usize] as usize)
            })
            .collect();
        let mut schedule = make_schedule(&parent, &work, threads, parallel_min_work);
        group_narrow_tops(&mut schedule, &parent, &work, |s| {
            self.cols(s) < TEAM_FACTOR_MIN
        });
        schedule
    }

    /// Lays out the panels (`val_ptr`): group by group, then the top supernodes, each group of
    /// narrow ones contiguous (a thread that factors one reads the panels of that group only),
    /// then the others.
    pub(super) fn lay_out_panels(&mut self) -> Result<()> {
        let ns = self.n_supernodes();
        let mut val_ptr = vec![0usize; ns + 1];
        let mut offset = 0;
        let (begin, row_ptr) = (&self.begin, &self.row_ptr);
        // Values of the panel of supernode s: height(s) x cols(s).
        let size = |s: u32| {
            let s = s as usize;
            let k = begin[s + 1] - begin[s];
            (k + row_ptr[s + 1] - row_ptr[s]) * k
        };
        let schedule = &mut self.schedule;
        schedule.region.clear();
        for group in &schedule.groups {
            schedule.region.push(offset);
            for &s in group {
                val_ptr[s as usize] = offset;
                offset += size(s);
            }
        }
        schedule.region.push(offset);
        let top_order: Vec<u32> = (schedule.top_groups.iter().flatten())
            .chain(&schedule.sequential)
            .map(|&i| schedule.top[i as usize])
            .collect();
        for &s in &top_order {
            val_ptr[s as usize] = offset;
            offset += size(s);
        }
        val_ptr[ns] = offset;
        if offset >= u32::MAX as usize {
            return Err(LmmError::Shape(format!(
                "{offset} values are too many for the sparse factor"
            )));
        }
        self.val_ptr = val_ptr;
        Ok(())
    }

    /// The column chunks of every top supernode, and the items of the first pass over them.
    /// `ready_order` lists the pulls from the groups as (column, index in `pulls`), in the
    /// order of the updates.
    pub(super) fn plan_top_chunks(&mut self, ready_order: &[(u32, u32)]) {
        let threads = self.schedule.threads;
        let mut chunk_ptr = vec![0];
        let mut chunks = Vec::new();
        let mut bounds = [0usize; 17];
        for &s in &self.schedule.top {
            let n = self.column_chunks(s as usize, threads, &mut bounds);
            chunks.extend(bounds[..=n].iter().map(|&b| b as u32));
            chunk_ptr.push(chunks.len());
        }
        // Heaviest supernode (the last, the root of the tree) first, so that the short items
        // of the small ones fill in at the end.
        let ready_items: Vec<(u32, u32)> = (0..self.schedule.top.len())
            .rev()
            .flat_map(|i| {
                let n = chunk_ptr[i + 1] - chunk_ptr[i] - 1;
                (0..n).map(move |c| (i as u32, c as u32))
            })
            .collect();
        self.schedule.chunk_ptr = chunk_ptr;
        self.schedule.chunks = chunks;
        self.schedule.ready_items = ready_items;
        self.bucket_item_pulls(ready_order);
        self.schedule.late = (self.schedule.top.iter())
            .map(|&s| {
                let s = s as usize;
                self.prod_late[s] < self.prod_ptr[s + 1]
                    || (self.begin[s]..self.begin[s + 1])
                        .any(|c| self.pull_late[c] < self.pull_ptr[c + 1])
            })
            .collect();
    }

    /// Each item's pulls by update (then by column): the target columns of one descendant one
    /// after the other, so that its values and rows are still in cache (the order of the
    /// subtractions at each target entry stays the same, so do the values). Bucketed from
    /// `ready_order`, which is in that order already.
    fn bucket_item_pulls(&mut self, ready_order: &[(u32, u32)]) {
        let ready_items = &self.schedule.ready_items;
        let n = self.begin[self.n_supernodes()];
        let mut item_of = vec![u32::MAX; n];
        let mut item_c0 = Vec::with_capacity(ready_items.len());
        let mut item_pull_ptr = vec![0usize; ready_items.len() + 1];
        for (it, &(i, c)) in ready_items.iter().enumerate() {
            let s = self.schedule.top[i as usize] as usize;
            let b = self.top_chunks(i as usize);
            let (c0, c1) = (b[c as usize] as usize, b[c as usize + 1] as usize);
            let f = self.begin[s];
            item_of[f + c0..f + c1].fill(it as u32);
            item_c0.push(f + c0);
            item_pull_ptr[it + 1] = (f + c0..f + c1)
                .map(|col| self.pull_late[col] - self.pull_ptr[col])
                .sum();
        }
        for it in 0..ready_items.len() {
            item_pull_ptr[it + 1] += item_pull_ptr[it];
        }
        let mut fill = item_pull_ptr.clone();
        let mut item_pulls = vec![(0, Pull::default()); item_pull_ptr[ready_items.len()]];
        for &(col, q) in ready_order {
            let it = item_of[col as usize];
            if it != u32::MAX {
                let it = it as usize;
                item_pulls[fill[it]] =
                    ((col as usize - item_c0[it]) as u32, self.pulls[q as usize]);
                fill[it] += 1;
            }
        }
        self.item_pull_ptr = item_pull_ptr;
        self.item_pulls = item_pulls;
    }

    /// Bounds of the column chunks of the i-th top supernode.
    pub(super) fn top_chunks(&self, i: usize) -> &[u32] {
        &self.schedule.chunks[self.schedule.chunk_ptr[i]..self.schedule.chunk_ptr[i + 1]]
    }

    /// Splits the columns of a top supernode into chunks of about equal estimated work; returns
    /// the number of chunks, whose bounds are `bounds[..=n]`.
    fn column_chunks(&self, s: usize, threads: usize, bounds: &mut [usize; 17]) -> usize {
        let k = self.cols(s);
        let work = &self.col_work[self.begin[s]..self.begin[s + 1]];
        let total: f64 = work.iter().sum();
        let n = if threads > 1 {
            ((total / CHUNK_WORK) as usize).clamp(1, (4 * threads).min(k).min(16))
        } else {
            1
        };
        let mut acc = 0.0;
        let mut c = 1;
        bounds[0] = 0;
        for (j, w) in work.iter().enumerate() {
            acc += w;
            if c < n && acc * n as f64 >= total * c as f64 && j + 1 > bounds[c - 1] {
                bounds[c] = j + 1;
                c += 1;
            }
        }
        // Fewer chunks if the work is concentrated in the last columns.
        let n = if c < n { c } else { n };
        bounds[n] = k;
        n
    }
}

/// Splits the supernodal elimination tree between `threads` threads: whole subtrees go to
/// groups of about equal work, processed in parallel; the supernodes above them (the top) are
/// processed afterwards (see `group_narrow_tops`). `parent[s]` is `usize::MAX` for a root;
/// children come before their parents. Factors of less than `min_work` get a one-thread
/// schedule.
fn make_schedule(parent: &[usize], work: &[f64], threads: usize, min_work: f64) -> Schedule {
    let ns = parent.len();
    if threads <= 1 || ns < 2 * threads || work.iter().sum::<f64>() < min_work {
        return Schedule {
            top: (0..ns as u32).collect(),
            threads: 1,
            ..Default::default()
        };
    }
    let mut subtree = work.to_vec();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); ns];
    for s in 0..ns {
        if parent[s] != usize::MAX {
            subtree[parent[s]] += subtree[s];
            children[parent[s]].push(s);
        }
    }
    // Open the heaviest subtree until none holds more than a quarter of a thread's share.
    let mut open: Vec<usize> = (0..ns).filter(|&s| parent[s] == usize::MAX).collect();
    let mut top = Vec::new();
    loop {
        let total: f64 = open.iter().map(|&s| subtree[s]).sum();
        let Some((i, &heaviest)) = open
            .iter()
            .enumerate()
            .max_by(|a, b| subtree[*a.1].total_cmp(&subtree[*b.1]))
        else {
            break;
        };
        if subtree[heaviest] * (4 * threads) as f64 <= total || top.len() >= 256 {
            break;
        }
        open.swap_remove(i);
        top.push(heaviest as u32);
        open.extend(&children[heaviest]);
    }
    // Longest processing time first.
    open.sort_by(|&a, &b| subtree[b].total_cmp(&subtree[a]));
    let mut load = vec![0.0f64; threads];
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); threads];
    let mut stack = Vec::new();
    for &root in &open {
        let g = (0..threads)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]))
            .unwrap_or(0);
        load[g] += subtree[root];
        stack.push(root);
        while let Some(s) = stack.pop() {
            groups[g].push(s as u32);
            stack.extend(&children[s]);
        }
    }
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.retain(|g| !g.is_empty());
    top.sort_unstable();
    Schedule {
        groups,
        top,
        threads,
        ..Default::default()
    }
}

/// Splits the top supernodes of a parallel schedule into independent subtrees of narrow ones,
/// which the threads finish side by side, one subtree each at a time, and the rest (the wide
/// ones, whose factors need the team, and those above them), finished one at a time by the
/// team. In InstEval the 15 top supernodes below the root form three subtrees: finished one
/// by one, each of their factors kept one thread waiting for the other. A serial schedule
/// keeps every top supernode sequential.
fn group_narrow_tops(
    schedule: &mut Schedule,
    parent: &[usize],
    work: &[f64],
    narrow: impl Fn(usize) -> bool,
) {
    let top = &schedule.top;
    schedule.top_groups.clear();
    schedule.sequential = (0..top.len() as u32).collect();
    if schedule.threads <= 1 {
        return;
    }
    let mut index = vec![u32::MAX; parent.len()];
    for (i, &s) in top.iter().enumerate() {
        index[s as usize] = i as u32;
    }
    // A top supernode joins a group when it and all its top descendants are narrow (children
    // come before their parents, and the parent of a top supernode is a top one).
    let mut groupable: Vec<bool> = top.iter().map(|&s| narrow(s as usize)).collect();
    for (i, &s) in top.iter().enumerate() {
        let p = parent[s as usize];
        if !groupable[i] && p != usize::MAX {
            groupable[index[p] as usize] = false;
        }
    }
    // Each group is the subtree of a groupable supernode whose parent is not groupable. While
    // the heaviest group holds more than a thread's share of them all, its root is left to the
    // team and its children's subtrees become groups (in InstEval, the root of the heaviest of
    // the three subtrees has 62 columns and most of that subtree's work).
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); top.len()];
    let mut subtree: Vec<f64> = top.iter().map(|&s| work[s as usize]).collect();
    let mut roots = Vec::new();
    for (i, &s) in top.iter().enumerate() {
        let p = parent[s as usize];
        match (p != usize::MAX).then(|| index[p] as usize) {
            Some(pi) if groupable[i] && groupable[pi] => {
                children[pi].push(i);
                subtree[pi] += subtree[i];
            }
            _ if groupable[i] => roots.push(i),
            _ => {}
        }
    }
    loop {
        let total: f64 = roots.iter().map(|&r| subtree[r]).sum();
        let Some((at, &h)) =
            (roots.iter().enumerate()).max_by(|a, b| subtree[*a.1].total_cmp(&subtree[*b.1]))
        else {
            break;
        };
        if subtree[h] * schedule.threads as f64 <= total || children[h].is_empty() {
            break;
        }
        roots.swap_remove(at);
        groupable[h] = false;
        roots.extend(&children[h]);
    }
    roots.sort_by(|&a, &b| subtree[b].total_cmp(&subtree[a]));
    schedule.top_groups = roots
        .iter()
        .map(|&r| {
            let mut members = Vec::new();
            let mut stack = vec![r];
            while let Some(i) = stack.pop() {
                members.push(i as u32);
                stack.extend(&children[i]);
            }
            members.sort_unstable();
            members
        })
        .collect();
    schedule.sequential = (0..top.len() as u32)
        .filter(|&i| !groupable[i as usize])
        .collect();
}
