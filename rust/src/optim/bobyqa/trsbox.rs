//! Powell's TRSBOX (BOBYQA, Powell 2009, section 3; NLopt's `bobyqa.c`, `trsbox_`): an
//! approximate minimiser d of the quadratic model Q(xopt + d) = Q(xopt) + g'd + d'Hd/2 within
//! the trust region |d| <= delta and the bounds sl <= xopt + d <= su. Truncated conjugate
//! gradients, with each variable that reaches a bound fixed there and the search restarted;
//! once d reaches the trust region's boundary, d is rotated in the plane of d and the reduced
//! gradient while the model falls enough. The model Hessian is the explicit packed part hq
//! plus the implicit sum_k pq_k y_k y_k' over the interpolation points.

// Index loops mirror the formulas (several arrays indexed by the same point and variable).
#![allow(clippy::needless_range_loop)]

use super::{dot, Bobyqa, NONE};

impl Bobyqa {
    /// An approximate minimiser d of the model within |d| <= delta and the bounds (Powell
    /// 2009, section 3): truncated conjugate gradients, with variables fixed on the bounds they
    /// reach, then, on the trust region's boundary, rotations of d in the plane of d and the
    /// reduced gradient. Sets xnew = xopt + d and gnew (the model gradient at xnew); returns
    /// |d|^2 and crvmin (the least curvature seen along a search direction, 0 when the step
    /// reached the boundary, -1 when unknown).
    pub(super) fn trust_region_step(&mut self, delta: f64) -> (f64, f64) {
        let n = self.n;
        let mut v = TrVecs {
            xopt: &self.xopt[..n],
            gopt: &self.gopt[..n],
            sl: &self.sl[..n],
            su: &self.su[..n],
            d: &mut self.d[..n],
            gnew: &mut self.gnew[..n],
            xbdi: &mut self.xbdi[..n],
            s: &mut self.s[..n],
            hs: &mut self.hs[..n],
            hred: &mut self.hred[..n],
            xnew: &mut self.xnew[..n],
            hess: Hess {
                n,
                xpt: &self.xpt,
                hq: &self.hq,
                pq: &self.pq,
            },
        };
        trust_region_step(&mut v, n, delta)
    }
}

/// The solver's vectors that `trust_region_step` reads and writes, each of length n.
struct TrVecs<'a> {
    xopt: &'a [f64],
    gopt: &'a [f64],
    sl: &'a [f64],
    su: &'a [f64],
    d: &'a mut [f64],
    gnew: &'a mut [f64],
    xbdi: &'a mut [i8],
    s: &'a mut [f64],
    hs: &'a mut [f64],
    hred: &'a mut [f64],
    xnew: &'a mut [f64],
    hess: Hess<'a>,
}

/// The model's second derivatives: hq (explicit, packed) and pq with the points (implicit).
struct Hess<'a> {
    n: usize,
    xpt: &'a [f64],
    hq: &'a [f64],
    pq: &'a [f64],
}

impl Hess<'_> {
    /// hs = (model Hessian) s.
    fn times(&self, s: &[f64], hs: &mut [f64]) {
        packed_times(self.hq, s, hs);
        for (row, &pk) in self.xpt.chunks_exact(self.n).zip(self.pq) {
            if pk != 0.0 {
                let temp = pk * dot(row, s);
                for (h, r) in hs.iter_mut().zip(row) {
                    *h += temp * r;
                }
            }
        }
    }
}

/// See `Bobyqa::trust_region_step`.
fn trust_region_step(v: &mut TrVecs, n: usize, delta: f64) -> (f64, f64) {
    {
        let mut iterc = 0usize;
        let mut nact = 0usize;
        for i in 0..n {
            v.xbdi[i] = 0;
            if v.xopt[i] <= v.sl[i] {
                if v.gopt[i] >= 0.0 {
                    v.xbdi[i] = -1;
                }
            } else if v.xopt[i] >= v.su[i] && v.gopt[i] <= 0.0 {
                v.xbdi[i] = 1;
            }
            if v.xbdi[i] != 0 {
                nact += 1;
            }
            v.d[i] = 0.0;
            v.gnew[i] = v.gopt[i];
        }
        let mut delsq = delta * delta;
        let mut qred = 0.0f64;
        let mut crvmin = -1.0f64;
        let mut beta = 0.0f64;
        let mut gredsq = 0.0f64;
        let mut ggsav = 0.0f64;
        let mut itermax = 0usize;
        // Conjugate gradients.
        let boundary = loop {
            let mut stepsq = 0.0;
            for i in 0..n {
                v.s[i] = if v.xbdi[i] != 0 {
                    0.0
                } else if beta == 0.0 {
                    -v.gnew[i]
                } else {
                    beta * v.s[i] - v.gnew[i]
                };
                stepsq += v.s[i] * v.s[i];
            }
            if stepsq == 0.0 {
                break false;
            }
            if beta == 0.0 {
                gredsq = stepsq;
                itermax = iterc + n - nact;
            }
            if gredsq * delsq <= 1e-4 * qred * qred {
                break false;
            }
            v.hess.times(v.s, v.hs);
            let mut resid = delsq;
            let mut ds = 0.0;
            let mut shs = 0.0;
            for i in 0..n {
                if v.xbdi[i] == 0 {
                    resid -= v.d[i] * v.d[i];
                    ds += v.s[i] * v.d[i];
                    shs += v.s[i] * v.hs[i];
                }
            }
            if resid <= 0.0 {
                break true;
            }
            // The step to the trust region's boundary, to the model's minimum along s, and to
            // the first bound.
            let temp = (stepsq * resid + ds * ds).sqrt();
            let blen = if ds < 0.0 {
                (temp - ds) / stepsq
            } else {
                resid / (temp + ds)
            };
            let mut stplen = blen;
            if shs > 0.0 {
                stplen = blen.min(gredsq / shs);
            }
            let mut iact = NONE;
            for i in 0..n {
                if v.s[i] != 0.0 {
                    let xsum = v.xopt[i] + v.d[i];
                    let t = if v.s[i] > 0.0 {
                        (v.su[i] - xsum) / v.s[i]
                    } else {
                        (v.sl[i] - xsum) / v.s[i]
                    };
                    if t < stplen {
                        stplen = t;
                        iact = i;
                    }
                }
            }
            let mut sdec = 0.0;
            if stplen > 0.0 {
                iterc += 1;
                let t = shs / stepsq;
                if iact == NONE && t > 0.0 {
                    crvmin = if crvmin == -1.0 { t } else { crvmin.min(t) };
                }
                ggsav = gredsq;
                gredsq = 0.0;
                for i in 0..n {
                    v.gnew[i] += stplen * v.hs[i];
                    if v.xbdi[i] == 0 {
                        gredsq += v.gnew[i] * v.gnew[i];
                    }
                    v.d[i] += stplen * v.s[i];
                }
                sdec = (stplen * (ggsav - 0.5 * stplen * shs)).max(0.0);
                qred += sdec;
            }
            if iact != NONE {
                // A bound was reached: fix the variable and restart from steepest descent.
                nact += 1;
                v.xbdi[iact] = if v.s[iact] < 0.0 { -1 } else { 1 };
                delsq -= v.d[iact] * v.d[iact];
                if delsq <= 0.0 {
                    break true;
                }
                beta = 0.0;
                continue;
            }
            if stplen < blen {
                if iterc == itermax || sdec <= 0.01 * qred {
                    break false;
                }
                beta = gredsq / ggsav;
                continue;
            }
            break true;
        };
        if boundary {
            crvmin = 0.0;
            rotate_on_boundary(v, n, &mut iterc, &mut nact, &mut qred);
        }
        // xnew = xopt + d within the bounds, exactly on the bounds of the fixed variables.
        let mut dsq = 0.0;
        for i in 0..n {
            let mut x = (v.xopt[i] + v.d[i]).min(v.su[i]).max(v.sl[i]);
            if v.xbdi[i] == -1 {
                x = v.sl[i];
            }
            if v.xbdi[i] == 1 {
                x = v.su[i];
            }
            v.xnew[i] = x;
            v.d[i] = x - v.xopt[i];
            dsq += v.d[i] * v.d[i];
        }
        (dsq, crvmin)
    }
}

/// The second stage of `trust_region_step`: with d on the trust region's boundary, rotate
/// it in the plane spanned by d and the reduced gradient, fixing variables at the bounds
/// they reach, while that reduces the model enough.
fn rotate_on_boundary(
    v: &mut TrVecs,
    n: usize,
    iterc: &mut usize,
    nact: &mut usize,
    qred: &mut f64,
) {
    {
        'outer: loop {
            if *nact + 1 >= n {
                return;
            }
            let mut dredsq = 0.0;
            let mut dredg = 0.0;
            let mut gredsq = 0.0;
            for i in 0..n {
                if v.xbdi[i] == 0 {
                    dredsq += v.d[i] * v.d[i];
                    dredg += v.d[i] * v.gnew[i];
                    gredsq += v.gnew[i] * v.gnew[i];
                    v.s[i] = v.d[i];
                } else {
                    v.s[i] = 0.0;
                }
            }
            v.hess.times(v.s, v.hs);
            v.hred.copy_from_slice(v.hs);
            loop {
                *iterc += 1;
                let temp = gredsq * dredsq - dredg * dredg;
                if temp <= 1e-4 * *qred * *qred {
                    return;
                }
                let temp = temp.sqrt();
                for i in 0..n {
                    v.s[i] = if v.xbdi[i] == 0 {
                        (dredg * v.d[i] - dredsq * v.gnew[i]) / temp
                    } else {
                        0.0
                    };
                }
                let sredg = -temp;
                // The largest angle before a free variable reaches a bound.
                let mut angbd = 1.0f64;
                let mut iact = NONE;
                let mut xsav = 0i8;
                for i in 0..n {
                    if v.xbdi[i] != 0 {
                        continue;
                    }
                    let tempa = v.xopt[i] + v.d[i] - v.sl[i];
                    let tempb = v.su[i] - v.xopt[i] - v.d[i];
                    if tempa <= 0.0 {
                        *nact += 1;
                        v.xbdi[i] = -1;
                        continue 'outer;
                    } else if tempb <= 0.0 {
                        *nact += 1;
                        v.xbdi[i] = 1;
                        continue 'outer;
                    }
                    let ssq = v.d[i] * v.d[i] + v.s[i] * v.s[i];
                    let t = ssq - (v.xopt[i] - v.sl[i]).powi(2);
                    if t > 0.0 {
                        let t = t.sqrt() - v.s[i];
                        if angbd * t > tempa {
                            angbd = tempa / t;
                            iact = i;
                            xsav = -1;
                        }
                    }
                    let t = ssq - (v.su[i] - v.xopt[i]).powi(2);
                    if t > 0.0 {
                        let t = t.sqrt() + v.s[i];
                        if angbd * t > tempb {
                            angbd = tempb / t;
                            iact = i;
                            xsav = 1;
                        }
                    }
                }
                v.hess.times(v.s, v.hs);
                let mut shs = 0.0;
                let mut dhs = 0.0;
                let mut dhd = 0.0;
                for i in 0..n {
                    if v.xbdi[i] == 0 {
                        shs += v.s[i] * v.hs[i];
                        dhs += v.d[i] * v.hs[i];
                        dhd += v.d[i] * v.hred[i];
                    }
                }
                // The best of equally spaced values of tan(angle / 2) in [0, angbd], refined
                // by a parabola through the best and its neighbours.
                let mut redmax = 0.0;
                let mut isav = 0usize;
                let mut redsav = 0.0;
                let mut rdprev = 0.0;
                let mut rdnext = 0.0;
                let iu = (angbd * 17.0 + 3.1) as usize;
                let mut angt = 0.0;
                for i in 1..=iu {
                    angt = angbd * i as f64 / iu as f64;
                    let sth = (angt + angt) / (1.0 + angt * angt);
                    let t = shs + angt * (angt * dhd - dhs - dhs);
                    let rednew = sth * (angt * dredg - sredg - 0.5 * sth * t);
                    if rednew > redmax {
                        redmax = rednew;
                        isav = i;
                        rdprev = redsav;
                    } else if i == isav + 1 {
                        rdnext = rednew;
                    }
                    redsav = rednew;
                }
                if isav == 0 {
                    return;
                }
                if isav < iu {
                    let t = (rdnext - rdprev) / (redmax + redmax - rdprev - rdnext);
                    angt = angbd * (isav as f64 + 0.5 * t) / iu as f64;
                }
                let cth = (1.0 - angt * angt) / (1.0 + angt * angt);
                let sth = (angt + angt) / (1.0 + angt * angt);
                let t = shs + angt * (angt * dhd - dhs - dhs);
                let sdec = sth * (angt * dredg - sredg - 0.5 * sth * t);
                if sdec <= 0.0 {
                    return;
                }
                dredg = 0.0;
                gredsq = 0.0;
                for i in 0..n {
                    v.gnew[i] += (cth - 1.0) * v.hred[i] + sth * v.hs[i];
                    if v.xbdi[i] == 0 {
                        v.d[i] = cth * v.d[i] + sth * v.s[i];
                        dredg += v.d[i] * v.gnew[i];
                        gredsq += v.gnew[i] * v.gnew[i];
                    }
                    v.hred[i] = cth * v.hred[i] + sth * v.hs[i];
                }
                *qred += sdec;
                if iact != NONE && isav == iu {
                    *nact += 1;
                    v.xbdi[iact] = xsav;
                    continue 'outer;
                }
                if sdec <= 0.01 * *qred {
                    return;
                }
            }
        }
    }
}

/// hs = H s for a symmetric H packed by columns (upper triangle: (i, j), i <= j, at
/// j (j + 1) / 2 + i), in the order of Powell's loops.
fn packed_times(hq: &[f64], s: &[f64], hs: &mut [f64]) {
    let n = s.len();
    hs.fill(0.0);
    let mut ih = 0;
    for j in 0..n {
        let col = &hq[ih..=ih + j];
        let sj = s[j];
        let mut acc = 0.0;
        for i in 0..j {
            acc += col[i] * s[i];
            hs[i] += col[i] * sj;
        }
        hs[j] = acc + col[j] * sj;
        ih += j + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::Bobyqa;

    /// The model Q(d) = g'd + d'Hd / 2 at xopt = 0 with H = [2 0.5; 0.5 1] (explicit, packed)
    /// and g = (-1, -1), whose minimiser is H^-1 (1, 1) = (2, 6) / 7, within sl <= d <= su.
    fn model(sl: [f64; 2], su: [f64; 2]) -> Bobyqa {
        let mut b = Bobyqa::new(2);
        b.hq.copy_from_slice(&[2.0, 0.5, 1.0]);
        b.gopt.copy_from_slice(&[-1.0, -1.0]);
        b.sl.copy_from_slice(&sl);
        b.su.copy_from_slice(&su);
        b
    }

    fn q(d: &[f64]) -> f64 {
        -d[0] - d[1] + 0.5 * (2.0 * d[0] * d[0] + d[0] * d[1] + d[1] * d[1])
    }

    #[test]
    fn interior_minimum_of_a_quadratic() {
        let mut b = model([-10.0; 2], [10.0; 2]);
        let (dsq, crvmin) = b.trust_region_step(10.0);
        let want = [2.0 / 7.0, 6.0 / 7.0];
        for i in 0..2 {
            assert!((b.d[i] - want[i]).abs() < 1e-14, "{:?}", b.d);
            assert_eq!(b.xnew[i], b.d[i]);
        }
        assert!((dsq - (want[0] * want[0] + want[1] * want[1])).abs() < 1e-14);
        // The least curvature along the search directions lies within H's spectrum.
        assert!(crvmin > 0.5 && crvmin < 2.3, "{crvmin}");
    }

    #[test]
    fn a_bound_stops_one_variable() {
        // d_1 <= 0.5 binds: d_1 = 0.5 exactly, and d_0 minimises Q(., 0.5): 2 d_0 + 0.25 = 1.
        let mut b = model([-10.0; 2], [10.0, 0.5]);
        let (_, crvmin) = b.trust_region_step(10.0);
        assert_eq!(b.xnew[1], 0.5);
        assert!((b.d[0] - 0.375).abs() < 1e-14, "{:?}", b.d);
        assert!(crvmin > 0.0);
    }

    #[test]
    fn small_trust_region() {
        // The minimiser lies outside |d| <= 0.5: the first conjugate-gradient step reaches the
        // boundary along -g (crvmin 0), and the rotation on the boundary then does better.
        let delta = 0.5;
        let mut b = model([-10.0; 2], [10.0; 2]);
        let (dsq, crvmin) = b.trust_region_step(delta);
        assert_eq!(crvmin, 0.0);
        assert!((dsq.sqrt() - delta).abs() < 1e-12, "{dsq}");
        let sd = [delta / 2f64.sqrt(); 2];
        assert!(q(&b.d) < q(&sd) - 1e-3, "{:?}", b.d);
    }
}
