//! The benchmark's latency plot.

use super::BenchResult;

/// An SVG of the latency distributions (complementary CDF, log–log).
pub fn plot_svg(results: &[BenchResult]) -> String {
    use std::fmt::Write as _;
    let (w, h, m) = (800.0, 480.0, 60.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<text x="{m}" y="20">Latency distribution: fraction of bins slower than x (log–log)</text>"#);
    let xmin = 1f64.log10();
    let xmax = 100_000f64.log10();
    let xpos = |us: f64| m + (us.max(1.0).log10() - xmin) / (xmax - xmin) * (w - 2.0 * m);
    let ypos = |p: f64| 30.0 + (-(p.max(1e-5)).log10()) / 5.0 * (h - 30.0 - m);
    for k in 0..=5 {
        let p = 10f64.powi(-k);
        let _ = write!(
            s,
            r##"<line x1="{m}" y1="{0}" x2="{1}" y2="{0}" stroke="#eee"/><text x="5" y="{2}">{3}</text>"##,
            ypos(p),
            w - m,
            ypos(p) + 4.0,
            if k == 0 { "1".to_string() } else { format!("1e-{k}") }
        );
    }
    for us in [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0] {
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="30" x2="{0}" y2="{1}" stroke="#ddd"/><text x="{0}" y="{2}">{us} µs</text>"##,
            xpos(us),
            h - m,
            h - m + 15.0
        );
    }
    let colours = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
        "#000000", "#aa0000",
    ];
    for (i, r) in results.iter().enumerate() {
        let Some(hist) = &r.histogram else { continue };
        if hist.is_empty() {
            continue;
        }
        let mut pts = Vec::new();
        for q in (0..=500).map(|k| 1.0 - 10f64.powf(-(k as f64) / 100.0)) {
            let us = hist.value_at_quantile(q.min(0.99999)) as f64 / 1e3;
            pts.push(format!("{:.1},{:.1}", xpos(us), ypos(1.0 - q)));
        }
        let c = colours[i % colours.len()];
        let label = format!("{} ch @ {}", r.channels, r.rate_hz.map(|x| format!("{x:.0} Hz")).unwrap_or("max".into()));
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" points="{}"/><text x="{}" y="{}" fill="{c}">{label}</text>"#,
            pts.join(" "),
            m + 10.0,
            h - m - 10.0 - 14.0 * (results.len() - 1 - i) as f64
        );
    }
    s.push_str("</svg>\n");
    s
}
