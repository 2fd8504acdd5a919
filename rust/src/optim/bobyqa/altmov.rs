//! Powell's ALTMOV (BOBYQA, Powell 2009, section 4; NLopt's `bobyqa.c`, `altmov_`): a new
//! position for the interpolation point knew within distance adelt of xopt and within the
//! bounds, where its Lagrange function l_knew is large, so that the interpolation system stays
//! well conditioned: the best point on the lines from xopt through the other points (xnew),
//! and a constrained Cauchy step of +-l_knew (xalt). The denominator of the updating formula,
//! vlag_knew^2 + alpha beta, decides between them in the driver.

// Index loops mirror the formulas (several arrays indexed by the same point and variable).
#![allow(clippy::needless_range_loop)]

use super::{dot, Bobyqa};

impl Bobyqa {
    /// A new position for interpolation point knew within distance adelt of xopt, chosen to
    /// make its Lagrange function large (so that the system stays well conditioned): the best
    /// point on the lines from xopt through the other points (xnew), and a constrained Cauchy
    /// step of the Lagrange function (xalt). Returns alpha (the diagonal element of H for knew)
    /// and the square of the Lagrange function's value at xalt (`cauchy`).
    pub(super) fn geometry_step(&mut self, kopt: usize, knew: usize, adelt: f64) -> (f64, f64) {
        let alpha = self.lagrange_gradient(knew);
        self.best_on_lines(kopt, knew, adelt, 0.5 * alpha);
        (alpha, self.cauchy_step(adelt))
    }

    /// Column knew of zmat zmat' (hcol) and the gradient of the Lagrange function of point
    /// knew at xopt (glag). Returns alpha = hcol[knew].
    fn lagrange_gradient(&mut self, knew: usize) -> f64 {
        let n = self.n;
        let npt = self.npt;
        let nptm = self.nptm();
        let xopt = &self.xopt[..n];
        let xpt = &self.xpt[..npt * n];
        let bmat = &self.bmat[..(npt + n) * n];
        let zmat = &self.zmat[..npt * nptm];
        let hcol = &mut self.hcol[..npt];
        let glag = &mut self.glag[..n];
        for k in 0..npt {
            hcol[k] = 0.0;
        }
        for j in 0..nptm {
            let temp = zmat[knew + j * npt];
            for k in 0..npt {
                hcol[k] += temp * zmat[k + j * npt];
            }
        }
        let alpha = hcol[knew];
        // The gradient of the Lagrange function at xopt.
        for i in 0..n {
            glag[i] = bmat[knew * n + i];
        }
        for k in 0..npt {
            let row = &xpt[k * n..(k + 1) * n];
            let temp = dot(row, xopt) * hcol[k];
            for i in 0..n {
                glag[i] += temp * row[i];
            }
        }
        alpha
    }

    /// xnew: the point on the lines from xopt through the other interpolation points, within
    /// adelt of xopt and the bounds, where the Lagrange function of point knew (weighted by
    /// the denominator it predicts, with ha = alpha / 2) is largest.
    fn best_on_lines(&mut self, kopt: usize, knew: usize, adelt: f64, ha: f64) {
        let n = self.n;
        let npt = self.npt;
        let xopt = &self.xopt[..n];
        let sl = &self.sl[..n];
        let su = &self.su[..n];
        let xpt = &self.xpt[..npt * n];
        let glag = &self.glag[..n];
        let xnew = &mut self.xnew[..n];
        // Along the line through xopt and each other point.
        let mut presav = 0.0;
        let mut ksav = knew;
        let mut stpsav = 0.0;
        let mut ibdsav: i64 = 0;
        for k in 0..npt {
            if k == kopt {
                continue;
            }
            let mut dderiv = 0.0;
            let mut distsq = 0.0;
            for i in 0..n {
                let temp = xpt[k * n + i] - xopt[i];
                dderiv += glag[i] * temp;
                distsq += temp * temp;
            }
            let mut subd = adelt / distsq.sqrt();
            let mut slbd = -subd;
            let mut ilbd: i64 = 0;
            let mut iubd: i64 = 0;
            let sumin = subd.min(1.0);
            // The bounds on the step along the line.
            for i in 0..n {
                let temp = xpt[k * n + i] - xopt[i];
                let lo = sl[i] - xopt[i];
                let hi = su[i] - xopt[i];
                let tag = i as i64 + 1;
                if temp > 0.0 {
                    if slbd * temp < lo {
                        slbd = lo / temp;
                        ilbd = -tag;
                    }
                    if subd * temp > hi {
                        subd = sumin.max(hi / temp);
                        iubd = tag;
                    }
                } else if temp < 0.0 {
                    if slbd * temp > hi {
                        slbd = hi / temp;
                        ilbd = tag;
                    }
                    if subd * temp < lo {
                        subd = sumin.max(lo / temp);
                        iubd = -tag;
                    }
                }
            }
            // The largest modulus of the Lagrange function along the line.
            let mut step;
            let mut vlag;
            let mut isbd;
            if k == knew {
                let diff = dderiv - 1.0;
                step = slbd;
                vlag = slbd * (dderiv - slbd * diff);
                isbd = ilbd;
                let temp = subd * (dderiv - subd * diff);
                if temp.abs() > vlag.abs() {
                    step = subd;
                    vlag = temp;
                    isbd = iubd;
                }
                let tempd = 0.5 * dderiv;
                let tempa = tempd - diff * slbd;
                let tempb = tempd - diff * subd;
                if tempa * tempb < 0.0 {
                    let temp = tempd * tempd / diff;
                    if temp.abs() > vlag.abs() {
                        step = tempd / diff;
                        vlag = temp;
                        isbd = 0;
                    }
                }
            } else {
                step = slbd;
                vlag = slbd * (1.0 - slbd);
                isbd = ilbd;
                let temp = subd * (1.0 - subd);
                if temp.abs() > vlag.abs() {
                    step = subd;
                    vlag = temp;
                    isbd = iubd;
                }
                if subd > 0.5 && vlag.abs() < 0.25 {
                    step = 0.5;
                    vlag = 0.25;
                    isbd = 0;
                }
                vlag *= dderiv;
            }
            let temp = step * (1.0 - step) * distsq;
            let predsq = vlag * vlag * (vlag * vlag + ha * temp * temp);
            if predsq > presav {
                presav = predsq;
                ksav = k;
                stpsav = step;
                ibdsav = isbd;
            }
        }
        for i in 0..n {
            let temp = xopt[i] + stpsav * (xpt[ksav * n + i] - xopt[i]);
            xnew[i] = sl[i].max(su[i].min(temp));
        }
        if ibdsav < 0 {
            let i = (-ibdsav - 1) as usize;
            xnew[i] = sl[i];
        }
        if ibdsav > 0 {
            let i = (ibdsav - 1) as usize;
            xnew[i] = su[i];
        }
    }

    /// xalt: a constrained Cauchy step of the Lagrange function of point knew (or of its
    /// negative, whichever is larger in modulus) of length up to adelt. Returns the square of
    /// the Lagrange function's value there.
    fn cauchy_step(&mut self, adelt: f64) -> f64 {
        let n = self.n;
        let npt = self.npt;
        let xopt = &self.xopt[..n];
        let sl = &self.sl[..n];
        let su = &self.su[..n];
        let xpt = &self.xpt[..npt * n];
        let hcol = &self.hcol[..npt];
        let glag = &mut self.glag[..n];
        let xalt = &mut self.xalt[..n];
        let wstep = &mut self.wstep[..n];
        let xcauchy = &mut self.xcauchy[..n];
        // The Cauchy step, for the Lagrange function and for its negative.
        let bigstp = adelt + adelt;
        let mut csave = 0.0;
        for pass in 0..2 {
            let mut wfixsq = 0.0;
            let mut ggfree = 0.0;
            for i in 0..n {
                wstep[i] = 0.0;
                let tempa = (xopt[i] - sl[i]).min(glag[i]);
                let tempb = (xopt[i] - su[i]).max(glag[i]);
                if tempa > 0.0 || tempb < 0.0 {
                    wstep[i] = bigstp;
                    ggfree += glag[i] * glag[i];
                }
            }
            if ggfree == 0.0 {
                return 0.0;
            }
            let mut step;
            loop {
                let temp = adelt * adelt - wfixsq;
                step = 0.0;
                if temp > 0.0 {
                    let wsqsav = wfixsq;
                    step = (temp / ggfree).sqrt();
                    ggfree = 0.0;
                    for i in 0..n {
                        if wstep[i] == bigstp {
                            let t = xopt[i] - step * glag[i];
                            if t <= sl[i] {
                                wstep[i] = sl[i] - xopt[i];
                                wfixsq += wstep[i] * wstep[i];
                            } else if t >= su[i] {
                                wstep[i] = su[i] - xopt[i];
                                wfixsq += wstep[i] * wstep[i];
                            } else {
                                ggfree += glag[i] * glag[i];
                            }
                        }
                    }
                    if wfixsq > wsqsav && ggfree > 0.0 {
                        continue;
                    }
                }
                break;
            }
            let mut gw = 0.0;
            for i in 0..n {
                let wi = wstep[i];
                if wi == bigstp {
                    wstep[i] = -step * glag[i];
                    xalt[i] = sl[i].max(su[i].min(xopt[i] + wstep[i]));
                } else if wi == 0.0 {
                    xalt[i] = xopt[i];
                } else if glag[i] > 0.0 {
                    xalt[i] = sl[i];
                } else {
                    xalt[i] = su[i];
                }
                gw += glag[i] * wstep[i];
            }
            let mut curv = 0.0;
            for k in 0..npt {
                let temp = dot(&xpt[k * n..(k + 1) * n], wstep);
                curv += hcol[k] * temp * temp;
            }
            if pass == 1 {
                curv = -curv;
            }
            let cauchy;
            if curv > -gw && curv < -(1.0 + std::f64::consts::SQRT_2) * gw {
                let scale = -gw / curv;
                for i in 0..n {
                    let temp = xopt[i] + scale * wstep[i];
                    xalt[i] = sl[i].max(su[i].min(temp));
                }
                cauchy = (0.5 * gw * scale) * (0.5 * gw * scale);
            } else {
                cauchy = (gw + 0.5 * curv) * (gw + 0.5 * curv);
            }
            if pass == 0 {
                for i in 0..n {
                    glag[i] = -glag[i];
                    xcauchy[i] = xalt[i];
                }
                csave = cauchy;
            } else {
                if csave > cauchy {
                    xalt.copy_from_slice(xcauchy);
                    return csave;
                }
                return cauchy;
            }
        }
        unreachable!("two passes return")
    }
}
