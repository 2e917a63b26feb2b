//! The report's charts, as inline SVG written here: horizontal bars
//! comparing the baseline with the candidate, and estimates with their
//! intervals. Plain shapes and text, so any browser renders them without
//! script or fonts of their own.

use super::html::esc;

/// The baseline's colour.
pub const BEFORE: &str = "#9aa5b1";
/// The candidate's colour.
pub const AFTER: &str = "#2b6cb0";

const WIDTH: f64 = 760.0;
const LABEL: f64 = 230.0;
const BAR: f64 = 11.0;

/// Horizontal bars, two per row (baseline and candidate), with their
/// values written after them. `rows` are (label, before, after); a missing
/// side draws no bar.
pub fn paired_bars(title: &str, rows: &[(String, Option<f64>, Option<f64>)]) -> String {
    let max = rows
        .iter()
        .flat_map(|(_, b, a)| [b.unwrap_or(0.0), a.unwrap_or(0.0)])
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let row_h = 2.0 * BAR + 10.0;
    let top = 34.0;
    let height = top + row_h * rows.len() as f64 + 8.0;
    let span = WIDTH - LABEL - 90.0;
    let mut s = header(title, height);
    s.push_str(&legend());
    for (i, (label, b, a)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        s.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="lbl">{}</text>"#,
            LABEL - 8.0,
            y + BAR + 4.0,
            esc(label)
        ));
        for (j, (v, colour)) in [(b, BEFORE), (a, AFTER)].into_iter().enumerate() {
            let Some(v) = v else { continue };
            let w = (v / max * span).max(if *v > 0.0 { 1.0 } else { 0.0 });
            let yy = y + j as f64 * BAR;
            s.push_str(&format!(
                r#"<rect x="{LABEL:.1}" y="{yy:.1}" width="{w:.1}" height="{:.1}" fill="{colour}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" class="val">{}</text>"#,
                BAR - 1.0,
                esc(label),
                number(*v),
                LABEL + w + 4.0,
                yy + BAR - 2.0,
                number(*v)
            ));
        }
    }
    s.push_str("</svg>");
    s
}

/// Estimates with their 95% intervals on a shared axis, with a reference
/// line (e.g. 0 for a lift). `rows` are (label, value, low, high).
pub fn intervals(
    title: &str,
    rows: &[(String, f64, f64, f64)],
    reference: Option<f64>,
    percent: bool,
) -> String {
    let lo = rows
        .iter()
        .map(|r| r.2)
        .chain(reference)
        .fold(f64::INFINITY, f64::min);
    let hi = rows
        .iter()
        .map(|r| r.3)
        .chain(reference)
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (lo.min(0.0) - 1.0, hi.max(0.0) + 1.0)
    };
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    // The figures go in a column of their own on the right.
    let span = WIDTH - LABEL - 190.0;
    let x = |v: f64| LABEL + (v - lo) / (hi - lo) * span;
    let row_h = 26.0;
    let top = 30.0;
    let height = top + row_h * rows.len() as f64 + 26.0;
    let fmt = |v: f64| {
        if percent {
            format!("{:+.1}%", 100.0 * v)
        } else {
            format!("{v:.4}")
        }
    };
    let mut s = header(title, height);
    if let Some(r) = reference {
        s.push_str(&format!(
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#c53030" stroke-dasharray="4 3"/>"##,
            x(r),
            top - 6.0,
            height - 20.0
        ));
    }
    for (i, (label, v, l, h)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64 + 8.0;
        s.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="lbl">{}</text><line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{AFTER}" stroke-width="2"/><circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{AFTER}"><title>{}: {} [{}, {}]</title></circle><text x="{:.1}" y="{:.1}" class="val">{} [{}, {}]</text>"##,
            LABEL - 8.0,
            y + 4.0,
            esc(label),
            x(*l),
            x(*h),
            x(*v),
            esc(label),
            fmt(*v),
            fmt(*l),
            fmt(*h),
            LABEL + span + 12.0,
            y + 4.0,
            fmt(*v),
            fmt(*l),
            fmt(*h)
        ));
    }
    s.push_str(&format!(
        r#"<text x="{:.1}" y="{:.1}" class="val">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" class="val">{}</text></svg>"#,
        LABEL,
        height - 6.0,
        fmt(lo),
        LABEL + span,
        height - 6.0,
        fmt(hi)
    ));
    s
}

fn header(title: &str, height: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" role="img" aria-label="{0}"><title>{0}</title><text x="0" y="14" class="ttl">{0}</text>"#,
        esc(title)
    )
}

fn legend() -> String {
    format!(
        r#"<rect x="{0:.1}" y="4" width="10" height="10" fill="{BEFORE}"/><text x="{1:.1}" y="13" class="val">baseline</text><rect x="{2:.1}" y="4" width="10" height="10" fill="{AFTER}"/><text x="{3:.1}" y="13" class="val">candidate</text>"#,
        WIDTH - 200.0,
        WIDTH - 186.0,
        WIDTH - 110.0,
        WIDTH - 96.0
    )
}

/// A number as the report writes it: integers without decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_bars_draw_one_bar_per_side_and_escape_labels() {
        let svg = paired_bars(
            "Mix <web>",
            &[
                ("A&B".into(), Some(10.0), Some(5.0)),
                ("C".into(), None, Some(2.0)),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=\"230.0\"").count(), 3, "{svg}");
        assert!(svg.contains("A&amp;B") && svg.contains("Mix &lt;web&gt;"));
    }

    #[test]
    fn intervals_place_the_reference_line_inside_the_axis() {
        let svg = intervals(
            "Lift",
            &[("champion".into(), 0.5, 0.2, 0.8)],
            Some(0.0),
            true,
        );
        assert!(svg.contains("+50.0% [+20.0%, +80.0%]"), "{svg}");
        assert!(svg.contains("stroke-dasharray"));
    }
}
