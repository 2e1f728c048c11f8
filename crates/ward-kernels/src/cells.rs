//! One time step of the fused RNN's cells (LSTM and GRU) for one batch item, forward and
//! backward, compiled per instruction set from one body (`per_isa!`): the gates' `sigmoid` and
//! `tanh` ([`crate::math`]) vectorise sixteen lanes wide with AVX-512F, eight with AVX2,
//! four on the baseline target. Gate slices hold the gates one after another (LSTM: i, f, g, o; GRU: r, z,
//! n), `hs` values each, as MXNet packs them.

#![allow(
    unsafe_code,
    reason = "the vector instances of each cell are called once their features are detected; the instances are safe code"
)]

use crate::error::check_len;
use crate::math::{sigmoid, tanh};

const KERNEL: &str = "rnn cell";

/// Checks that each named slice holds `gates·hs` values.
fn check(slices: &[(&'static str, usize, usize)], hs: usize) -> Result<(), crate::KernelError> {
    for &(name, len, gates) in slices {
        check_len(KERNEL, name, len, gates.saturating_mul(hs))?;
    }
    Ok(())
}

per_isa! {
    /// One LSTM step: `g` holds the pre-activations of i, f, g, o and becomes their
    /// activations; `c` becomes c', `h` becomes h' and `tc` tanh(c').
    pub fn lstm_forward(g: &mut [f32], h: &mut [f32], c: &mut [f32], tc: &mut [f32], hs: usize)
    check {
        check(&[("g", g.len(), 4), ("h", h.len(), 1), ("c", c.len(), 1), ("tc", tc.len(), 1)], hs)?;
    }
    body {
        let (gi, rest) = g.split_at_mut(hs);
        let (gf, rest) = rest.split_at_mut(hs);
        let (gg, go) = rest.split_at_mut(hs);
        let gates = gi.iter_mut().zip(gf.iter_mut()).zip(gg.iter_mut().zip(go));
        let state = h.iter_mut().zip(c.iter_mut()).zip(tc.iter_mut());
        for (((gi, gf), (gg, go)), ((h, c), tc)) in gates.zip(state) {
            let i = sigmoid(*gi);
            let f = sigmoid(*gf);
            let gv = tanh(*gg);
            let o = sigmoid(*go);
            *gi = i;
            *gf = f;
            *gg = gv;
            *go = o;
            let cn = f * *c + i * gv;
            let t = tanh(cn);
            *c = cn;
            *tc = t;
            *h = o * t;
        }
    }
}

per_isa! {
    /// The LSTM step backward: from the gates' activations `g`, dh' (`dhn`), dc' (`dc`,
    /// which becomes dc), the cell the step started from and tanh(c'), the gates'
    /// pre-activation gradients `dg`.
    pub fn lstm_backward(
        dg: &mut [f32],
        g: &[f32],
        dhn: &[f32],
        dc: &mut [f32],
        c_prev: &[f32],
        tc: &[f32],
        hs: usize,
    )
    check {
        check(
            &[
                ("dg", dg.len(), 4),
                ("g", g.len(), 4),
                ("dhn", dhn.len(), 1),
                ("dc", dc.len(), 1),
                ("c_prev", c_prev.len(), 1),
                ("tc", tc.len(), 1),
            ],
            hs,
        )?;
    }
    body {
        let (dgi, rest) = dg.split_at_mut(hs);
        let (dgf, rest) = rest.split_at_mut(hs);
        let (dgg, dgo) = rest.split_at_mut(hs);
        let (gi, rest) = g.split_at(hs);
        let (gf, rest) = rest.split_at(hs);
        let (gg, go) = rest.split_at(hs);
        let outs = dgi.iter_mut().zip(dgf.iter_mut()).zip(dgg.iter_mut().zip(dgo));
        let gates = gi.iter().zip(gf).zip(gg.iter().zip(go));
        let state = dhn.iter().zip(dc.iter_mut()).zip(c_prev.iter().zip(tc));
        for ((((dgi, dgf), (dgg, dgo)), ((&i, &f), (&gv, &o))), ((&dho, dc), (&cp, &t))) in
            outs.zip(gates).zip(state)
        {
            let dct = *dc + dho * o * (1.0 - t * t);
            *dgi = dct * gv * i * (1.0 - i);
            *dgf = dct * cp * f * (1.0 - f);
            *dgg = dct * i * (1.0 - gv * gv);
            *dgo = dho * t * o * (1.0 - o);
            *dc = dct * f;
        }
    }
}

per_isa! {
    /// One GRU step: `g` holds the i2h pre-activations of r, z, n (with b_i) and becomes
    /// the activations; `gh` the h2h terms (with b_h); `h` becomes h'; `ghn` keeps the n
    /// gate's h2h term.
    pub fn gru_forward(g: &mut [f32], gh: &[f32], h: &mut [f32], ghn: &mut [f32], hs: usize)
    check {
        check(&[("g", g.len(), 3), ("gh", gh.len(), 3), ("h", h.len(), 1), ("ghn", ghn.len(), 1)], hs)?;
    }
    body {
        let (gr, rest) = g.split_at_mut(hs);
        let (gz, gn) = rest.split_at_mut(hs);
        let (hr, rest) = gh.split_at(hs);
        let (hz, hn) = rest.split_at(hs);
        let gates = gr.iter_mut().zip(gz.iter_mut()).zip(gn.iter_mut());
        let terms = hr.iter().zip(hz).zip(hn);
        for (((gr, gz), gn), (((&hr, &hz), &hn), (h, ghn))) in
            gates.zip(terms.zip(h.iter_mut().zip(ghn.iter_mut())))
        {
            let r = sigmoid(*gr + hr);
            let z = sigmoid(*gz + hz);
            let nv = tanh(*gn + r * hn);
            *gr = r;
            *gz = z;
            *gn = nv;
            *ghn = hn;
            *h = (1.0 - z) * nv + z * *h;
        }
    }
}

per_isa! {
    /// The GRU step backward: from the activations `g`, dh' (`dhn`), the state the step
    /// started from and the n gate's h2h term, the i2h and h2h pre-activation gradients
    /// and the direct part of dh (z·dh'), written to `dh`.
    #[allow(clippy::too_many_arguments, reason = "one row of each buffer the step reads and writes")]
    pub fn gru_backward(
        dg: &mut [f32],
        dgh: &mut [f32],
        g: &[f32],
        dhn: &[f32],
        h_prev: &[f32],
        ghn: &[f32],
        dh: &mut [f32],
        hs: usize,
    )
    check {
        check(
            &[
                ("dg", dg.len(), 3),
                ("dgh", dgh.len(), 3),
                ("g", g.len(), 3),
                ("dhn", dhn.len(), 1),
                ("h_prev", h_prev.len(), 1),
                ("ghn", ghn.len(), 1),
                ("dh", dh.len(), 1),
            ],
            hs,
        )?;
    }
    body {
        let (dgr, rest) = dg.split_at_mut(hs);
        let (dgz, dgn) = rest.split_at_mut(hs);
        let (dhr, rest) = dgh.split_at_mut(hs);
        let (dhz, dhn_h) = rest.split_at_mut(hs);
        let (gr, rest) = g.split_at(hs);
        let (gz, gn) = rest.split_at(hs);
        let outs = dgr.iter_mut().zip(dgz.iter_mut()).zip(dgn.iter_mut());
        let outs_h = dhr.iter_mut().zip(dhz.iter_mut()).zip(dhn_h.iter_mut());
        let gates = gr.iter().zip(gz).zip(gn);
        let state = dhn.iter().zip(h_prev).zip(ghn.iter().zip(dh.iter_mut()));
        for ((((dgr, dgz), dgn), ((dhr, dhz), dhn_h)), (((&r, &z), &nv), ((&d, &hp), (&ghn, dh)))) in
            outs.zip(outs_h).zip(gates.zip(state))
        {
            let dn = d * (1.0 - z) * (1.0 - nv * nv);
            let dz = d * (hp - nv) * z * (1.0 - z);
            let dr = dn * ghn * r * (1.0 - r);
            *dgr = dr;
            *dhr = dr;
            *dgz = dz;
            *dhz = dz;
            *dgn = dn;
            *dhn_h = dn * r;
            *dh = d * z;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Test values in [−5, 5] (the gates' useful range).
    fn data(len: usize, seed: u32) -> Vec<f32> {
        crate::test_values(len, seed)
            .iter()
            .map(|v| v / 2.0)
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Every cell, run by the AVX-512 instance where the CPU has it, gives its baseline
    /// instance's bits, on a state width that is no multiple of the vector's.
    #[test]
    fn every_instance_gives_the_same_bits() {
        let hs = 37;
        let run_lstm = || {
            let (mut g, mut h, mut c, mut tc) =
                (data(4 * hs, 1), data(hs, 2), data(hs, 3), data(hs, 4));
            lstm_forward(&mut g, &mut h, &mut c, &mut tc, hs).unwrap();
            let (mut dg, mut dc) = (data(4 * hs, 5), data(hs, 6));
            lstm_backward(&mut dg, &g, &data(hs, 7), &mut dc, &data(hs, 8), &tc, hs).unwrap();
            [g, h, c, tc, dg, dc].concat()
        };
        let run_gru = || {
            let (mut g, mut h, mut ghn) = (data(3 * hs, 1), data(hs, 2), data(hs, 3));
            gru_forward(&mut g, &data(3 * hs, 4), &mut h, &mut ghn, hs).unwrap();
            let (mut dg, mut dgh, mut dh) = (data(3 * hs, 5), data(3 * hs, 6), data(hs, 7));
            gru_backward(
                &mut dg,
                &mut dgh,
                &g,
                &data(hs, 8),
                &data(hs, 9),
                &ghn,
                &mut dh,
                hs,
            )
            .unwrap();
            [g, h, ghn, dg, dgh, dh].concat()
        };
        crate::isa::same_on_every_isa("lstm", || bits(&run_lstm()));
        crate::isa::same_on_every_isa("gru", || bits(&run_gru()));
    }

    /// An LSTM step against its definition in f64.
    #[test]
    fn an_lstm_step_is_its_definition() {
        let hs = 5;
        let (g0, h0, c0) = (data(4 * hs, 1), data(hs, 2), data(hs, 3));
        let (mut g, mut h, mut c, mut tc) = (g0.clone(), h0, c0.clone(), vec![0.0; hs]);
        lstm_forward(&mut g, &mut h, &mut c, &mut tc, hs).unwrap();
        let sig = |v: f32| 1.0 / (1.0 + (-f64::from(v)).exp());
        for j in 0..hs {
            let (i, f) = (sig(g0[j]), sig(g0[hs + j]));
            let (gv, o) = (f64::from(g0[2 * hs + j]).tanh(), sig(g0[3 * hs + j]));
            let cn = f * f64::from(c0[j]) + i * gv;
            assert!((f64::from(c[j]) - cn).abs() < 1e-5, "c[{j}]");
            assert!((f64::from(h[j]) - o * cn.tanh()).abs() < 1e-5, "h[{j}]");
        }
    }

    #[test]
    fn a_slice_of_another_length_is_refused() {
        let hs = 4;
        let (mut g, mut h, mut c, mut tc) = (
            vec![0.0; 4 * hs],
            vec![0.0; hs],
            vec![0.0; hs],
            vec![0.0; hs - 1],
        );
        assert!(lstm_forward(&mut g, &mut h, &mut c, &mut tc, hs).is_err());
    }
}
