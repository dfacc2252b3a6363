//! Server-side SVG charts: hand-made, because what the alert page needs is small (lines
//! with gaps, a shaded band, a marked interval) and must render without JS or fonts.
//! Values arrive as `f64`: here money stops being `Decimal` and becomes a drawn position.
//! Every text that reaches the SVG goes through [`escape`].

use std::fmt::Write as _;

use jiff::Timestamp;
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use super::format;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 76.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// How the y axis labels its values.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueFormat {
    Money(String),
    Quantity(String),
}

impl ValueFormat {
    fn label(&self, v: f64) -> String {
        let d = Decimal::from_f64(v).unwrap_or_default();
        match self {
            ValueFormat::Money(currency) => format::money(d, currency),
            ValueFormat::Quantity(unit) => format::quantity(d, unit),
        }
    }
}

/// One drawn series; `None` values are gaps (the line stops and starts again).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    /// CSS class suffix: `series-<class>`.
    pub class: &'static str,
    pub points: Vec<(Timestamp, Option<f64>)>,
}

/// The expected range at one time; an open side (`None`) reaches the edge of the plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    pub at: Timestamp,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// One chart: lines over a time range, the expected band and the alert's interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub format: ValueFormat,
    pub from: Timestamp,
    pub to: Timestamp,
    pub lines: Vec<Line>,
    /// Contiguous runs are drawn as one polygon each; a missing time breaks the run.
    pub band: Vec<Option<BandPoint>>,
    /// The alert's pending-to-resolved interval (end: still open).
    pub marked: Option<(Timestamp, Timestamp)>,
}

/// Maps data to the drawing area.
struct Scale {
    t0: f64,
    t1: f64,
    y0: f64,
    y1: f64,
}

impl Scale {
    fn x(&self, at: Timestamp) -> f64 {
        let t = at.as_second() as f64;
        let span = (self.t1 - self.t0).max(1.0);
        LEFT + (t - self.t0) / span * (WIDTH - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        let span = (self.y1 - self.y0).max(f64::EPSILON);
        TOP + (self.y1 - v) / span * (HEIGHT - TOP - BOTTOM)
    }
}

/// XML text and attribute escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Runs of consecutive known values: each becomes its own path (a gap is a gap).
fn segments(points: &[(Timestamp, Option<f64>)]) -> Vec<Vec<(Timestamp, f64)>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for (at, v) in points {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push((*at, v)),
            None if !run.is_empty() => out.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

fn band_runs(band: &[Option<BandPoint>]) -> Vec<Vec<BandPoint>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for p in band {
        match p.filter(|p| p.low.is_some() || p.high.is_some()) {
            Some(p) => run.push(p),
            None if !run.is_empty() => out.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// The value range the plot shows: every known value and band edge, zero-based when all
/// values are on one side of zero and close to it, padded so lines do not touch the frame.
fn value_range(panel: &Panel) -> Option<(f64, f64)> {
    let values = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .chain(
            panel
                .band
                .iter()
                .flatten()
                .flat_map(|b| [b.low, b.high].into_iter().flatten()),
        )
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold(None, |acc: Option<(f64, f64)>, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })?;
    if lo > 0.0 && lo < hi * 0.5 {
        lo = 0.0;
    }
    if (hi - lo).abs() < f64::EPSILON {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let pad = (hi - lo) * 0.05;
    // Spend that never went negative keeps zero as the floor (no "-$102" axis label).
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    Some(((lo - pad).max(floor), hi + pad))
}

fn has_data(panel: &Panel) -> bool {
    panel
        .lines
        .iter()
        .any(|l| l.points.iter().any(|p| p.1.is_some_and(f64::is_finite)))
}

/// The panel as an inline `<svg>` element (scales to its container's width).
pub fn render(panel: &Panel) -> String {
    let mut svg = String::new();
    let title = escape(&panel.title);
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>"#
    );
    let range = value_range(panel).filter(|_| has_data(panel));
    let Some((y0, y1)) = range else {
        let _ = write!(
            svg,
            r#"<rect class="frame" x="{LEFT}" y="{TOP}" width="{w}" height="{h}"/><text class="no-data" x="{cx}" y="{cy}" text-anchor="middle">no data for this range</text></svg>"#,
            w = WIDTH - LEFT - RIGHT,
            h = HEIGHT - TOP - BOTTOM,
            cx = LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            cy = TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        );
        return svg;
    };
    let scale = Scale {
        t0: panel.from.as_second() as f64,
        t1: panel.to.as_second() as f64,
        y0,
        y1,
    };
    let _ = write!(
        svg,
        r#"<rect class="frame" x="{LEFT}" y="{TOP}" width="{w}" height="{h}"/>"#,
        w = WIDTH - LEFT - RIGHT,
        h = HEIGHT - TOP - BOTTOM
    );

    if let Some((start, end)) = panel.marked {
        let (x0, x1) = (
            scale.x(start.max(panel.from)).min(WIDTH - RIGHT),
            scale.x(end.min(panel.to)).max(LEFT),
        );
        if x1 >= x0 {
            let _ = write!(
                svg,
                r#"<rect class="alert-interval" x="{x0:.1}" y="{TOP}" width="{w:.1}" height="{h}"><title>alert {from} – {to}</title></rect>"#,
                w = (x1 - x0).max(2.0),
                h = HEIGHT - TOP - BOTTOM,
                from = format::utc(start),
                to = format::utc(end),
            );
        }
    }

    for run in band_runs(&panel.band) {
        let edge = |v: Option<f64>, open: f64| scale.y(v.unwrap_or(open));
        let mut points: Vec<String> = run
            .iter()
            .map(|p| format!("{:.1},{:.1}", scale.x(p.at), edge(p.high, y1)))
            .collect();
        points.extend(
            run.iter()
                .rev()
                .map(|p| format!("{:.1},{:.1}", scale.x(p.at), edge(p.low, y0))),
        );
        // A one-point run would be a line; widen it so it shows.
        if run.len() == 1 {
            let p = run[0];
            let (x, top, bottom) = (scale.x(p.at), edge(p.high, y1), edge(p.low, y0));
            points = vec![
                format!("{:.1},{top:.1}", x - 3.0),
                format!("{:.1},{top:.1}", x + 3.0),
                format!("{:.1},{bottom:.1}", x + 3.0),
                format!("{:.1},{bottom:.1}", x - 3.0),
            ];
        }
        let _ = write!(
            svg,
            r#"<polygon class="band" points="{}"/>"#,
            points.join(" ")
        );
    }

    if y0 < 0.0 && y1 > 0.0 {
        let _ = write!(
            svg,
            r#"<line class="zero" x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}"/>"#,
            x2 = WIDTH - RIGHT,
            y = scale.y(0.0)
        );
    }

    for line in &panel.lines {
        let name = escape(&line.name);
        for run in segments(&line.points) {
            if let [(at, v)] = run.as_slice() {
                let _ = write!(
                    svg,
                    r#"<circle class="series series-{class}" cx="{x:.1}" cy="{y:.1}" r="3"><title>{name}</title></circle>"#,
                    class = line.class,
                    x = scale.x(*at),
                    y = scale.y(*v),
                );
                continue;
            }
            let d: Vec<String> = run
                .iter()
                .enumerate()
                .map(|(i, (at, v))| {
                    let cmd = if i == 0 { 'M' } else { 'L' };
                    format!("{cmd}{:.1},{:.1}", scale.x(*at), scale.y(*v))
                })
                .collect();
            let _ = write!(
                svg,
                r#"<path class="series series-{class}" d="{d}"><title>{name}</title></path>"#,
                class = line.class,
                d = d.join(" "),
            );
        }
    }

    // Axis labels: top and bottom of the range, first and last time.
    for v in [y1, y0] {
        let _ = write!(
            svg,
            r#"<text class="axis" x="{x}" y="{y:.1}" text-anchor="end">{label}</text>"#,
            x = LEFT - 4.0,
            y = scale.y(v) + 4.0,
            label = escape(&panel.format.label(v)),
        );
    }
    let date = |t: Timestamp| t.strftime("%m-%d %H:%M").to_string();
    let _ = write!(
        svg,
        r#"<text class="axis" x="{LEFT}" y="{y}">{from}</text><text class="axis" x="{x}" y="{y}" text-anchor="end">{to}</text></svg>"#,
        y = HEIGHT - 6.0,
        x = WIDTH - RIGHT,
        from = date(panel.from),
        to = date(panel.to),
    );
    svg
}

/// A small line without axes for tables; gaps stay gaps.
pub fn sparkline(values: &[Option<f64>]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let known: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (Some(lo), Some(hi)) = (
        known.iter().copied().reduce(f64::min),
        known.iter().copied().reduce(f64::max),
    ) else {
        return r#"<span class="muted">no data</span>"#.to_string();
    };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = W / (values.len().max(2) - 1) as f64;
    let y = |v: f64| H - 2.0 - (v - lo) / span * (H - 4.0);
    let mut svg = format!(
        r#"<svg class="sparkline" viewBox="0 0 {W} {H}" width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let indexed: Vec<(usize, Option<f64>)> = values.iter().copied().enumerate().collect();
    let mut run: Vec<(usize, f64)> = Vec::new();
    let flush = |run: &mut Vec<(usize, f64)>, svg: &mut String| {
        match run.as_slice() {
            [] => {}
            [(i, v)] => {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="1.5"/>"#,
                    *i as f64 * step,
                    y(*v)
                );
            }
            many => {
                let d: Vec<String> = many
                    .iter()
                    .enumerate()
                    .map(|(k, (i, v))| {
                        let cmd = if k == 0 { 'M' } else { 'L' };
                        format!("{cmd}{:.1},{:.1}", *i as f64 * step, y(*v))
                    })
                    .collect();
                let _ = write!(svg, r#"<path d="{}"/>"#, d.join(" "));
            }
        }
        run.clear();
    };
    for (i, v) in indexed {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push((i, v)),
            None => flush(&mut run, &mut svg),
        }
    }
    flush(&mut run, &mut svg);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hours: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + hours * 3600).unwrap()
    }

    fn panel(lines: Vec<Line>, band: Vec<Option<BandPoint>>) -> Panel {
        Panel {
            title: "unit cost".into(),
            format: ValueFormat::Money("JPY".into()),
            from: t(0),
            to: t(10),
            lines,
            band,
            marked: None,
        }
    }

    fn line(values: &[Option<f64>]) -> Line {
        Line {
            name: "cost".into(),
            class: "cost",
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| (t(i as i64), *v))
                .collect(),
        }
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    /// The `points` attribute of each band polygon, as coordinate pairs.
    fn polygons(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split(r#"<polygon class="band" points=""#)
            .skip(1)
            .map(|rest| {
                rest.split('"')
                    .next()
                    .unwrap()
                    .split(' ')
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn band_is_a_closed_polygon_above_low_and_below_high() {
        let band: Vec<Option<BandPoint>> = (0..4)
            .map(|i| {
                Some(BandPoint {
                    at: t(i),
                    low: Some(5.0),
                    high: Some(7.0),
                })
            })
            .collect();
        let svg = render(&panel(
            vec![line(&[Some(6.0), Some(6.5), Some(11.0), Some(6.0)])],
            band,
        ));
        let shapes = polygons(&svg);
        assert_eq!(shapes.len(), 1, "{svg}");
        let poly = &shapes[0];
        assert_eq!(poly.len(), 8, "upper edge left to right, lower edge back");
        // The upper edge (high = 7) is drawn above (smaller y than) the lower edge (low = 5).
        let (upper, lower) = poly.split_at(4);
        assert!(
            upper
                .iter()
                .zip(lower.iter().rev())
                .all(|(u, l)| u.1 < l.1 && u.0 == l.0)
        );
        assert!(upper.windows(2).all(|w| w[0].0 < w[1].0), "left to right");
        // The spike to 11 is outside: its y is above the band's top.
        let band_top = upper[2].1;
        let path = svg.split(r#"d=""#).nth(1).unwrap();
        let third_y: f64 = path.split(' ').nth(2).unwrap()[1..]
            .split(',')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(third_y < band_top, "{third_y} above {band_top}");
    }

    #[test]
    fn an_open_band_side_reaches_the_plot_edge_and_gaps_split_the_band() {
        let p = |i, low, high| {
            Some(BandPoint {
                at: t(i),
                low,
                high,
            })
        };
        let band = vec![
            p(0, None, Some(7.0)),
            p(1, None, Some(7.0)),
            None,
            p(3, Some(1.0), None),
        ];
        let svg = render(&panel(
            vec![line(&[Some(6.0), Some(6.0), Some(6.0), Some(6.0)])],
            band,
        ));
        let shapes = polygons(&svg);
        assert_eq!(shapes.len(), 2, "the missing window splits the band: {svg}");
        let bottom = TOP + (HEIGHT - TOP - BOTTOM);
        assert!(
            shapes[0].iter().any(|(_, y)| (*y - bottom).abs() < 0.2),
            "open low side: {:?}",
            shapes[0]
        );
        assert!(
            shapes[1].iter().any(|(_, y)| (*y - TOP).abs() < 0.2),
            "open high side: {:?}",
            shapes[1]
        );
        assert_eq!(shapes[1].len(), 4, "a one-window band is widened to show");
    }

    #[test]
    fn gaps_in_data_are_gaps_not_zero_lines() {
        let svg = render(&panel(
            vec![line(&[
                Some(3.0),
                Some(4.0),
                None,
                None,
                Some(5.0),
                Some(6.0),
                None,
                Some(2.0),
            ])],
            Vec::new(),
        ));
        assert_eq!(
            count(&svg, r#"<path class="series series-cost""#),
            2,
            "{svg}"
        );
        assert_eq!(count(&svg, "<circle"), 1, "the lone last point is drawn");
        // No segment bridges the gap: each path starts with M and has exactly one M.
        for d in svg.split(r#"d=""#).skip(1) {
            let d = d.split('"').next().unwrap();
            assert_eq!(d.matches('M').count(), 1, "{d}");
            assert_eq!(d.matches('L').count(), 1, "{d}");
        }
        // A zero would be drawn at the plot's bottom; nothing is.
        let zero_y = format!(",{:.1}", TOP + (HEIGHT - TOP - BOTTOM));
        assert!(!svg.contains(&format!("L{}", zero_y)), "{svg}");
    }

    #[test]
    fn negative_values_are_plotted_below_a_zero_line() {
        let svg = render(&panel(
            vec![line(&[Some(-50.0), Some(20.0), Some(-10.0)])],
            Vec::new(),
        ));
        assert_eq!(count(&svg, r#"<line class="zero""#), 1, "{svg}");
        let zero_y: f64 = svg
            .split(r#"class="zero""#)
            .nth(1)
            .unwrap()
            .split(r#"y1=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let d = svg
            .split(r#"d=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ys: Vec<f64> = d
            .split(' ')
            .map(|p| p[1..].split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(
            ys[0] > zero_y && ys[1] < zero_y && ys[2] > zero_y,
            "{ys:?} around {zero_y}"
        );
        assert!(ys[0] > ys[2], "-50 is lower than -10");
        assert!(svg.contains("-¥"), "negative axis label: {svg}");
    }

    #[test]
    fn a_single_point_is_drawn_visibly() {
        let svg = render(&panel(vec![line(&[None, Some(42.0), None])], Vec::new()));
        assert_eq!(count(&svg, "<circle"), 1, "{svg}");
        assert_eq!(count(&svg, "<path"), 0);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn empty_series_say_no_data() {
        for lines in [Vec::new(), vec![line(&[])], vec![line(&[None, None])]] {
            let svg = render(&panel(lines, Vec::new()));
            assert!(svg.contains("no data"), "{svg}");
            assert_eq!(count(&svg, "<path"), 0);
        }
        assert!(sparkline(&[]).contains("no data"));
        assert!(sparkline(&[None]).contains("no data"));
    }

    #[test]
    fn the_alert_interval_is_marked_and_titles_are_escaped() {
        let mut p = panel(vec![line(&[Some(1.0), Some(2.0)])], Vec::new());
        p.marked = Some((t(1), t(3)));
        p.title = "a<b>&\"c\"".into();
        let svg = render(&p);
        assert_eq!(count(&svg, r#"<rect class="alert-interval""#), 1);
        assert!(svg.contains("a&lt;b&gt;&amp;&quot;c&quot;"), "{svg}");
        assert!(!svg.contains("<b>"));
    }

    #[test]
    fn sparklines_keep_gaps_and_single_points() {
        let svg = sparkline(&[
            Some(1.0),
            Some(2.0),
            None,
            Some(3.0),
            None,
            Some(1.0),
            Some(0.0),
        ]);
        assert_eq!(count(&svg, "<path"), 2, "{svg}");
        assert_eq!(count(&svg, "<circle"), 1, "{svg}");
        let flat = sparkline(&[Some(-4.0), Some(-4.0)]);
        assert!(!flat.contains("NaN"), "{flat}");
    }
}
