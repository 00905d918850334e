//! Line charts as inline SVG strings (plotters' SVG backend: no JavaScript, no external
//! files, text rendered by the browser).

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One named line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) color: RGBColor,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A chart: lines over a shared x axis.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    /// Logarithmic y axis (for quantities that span orders of magnitude across strategies).
    pub(crate) log_y: bool,
    /// The x values are log₂ of the quantity: label the ticks as powers of two (for limits).
    pub(crate) x_pow2: bool,
    /// Draw a legend inside the chart (pages with many charts show one legend instead).
    pub(crate) legend: bool,
    pub(crate) lines: Vec<Line>,
}

/// What is drawn over a chart's lines: reference lines and marked points. Kept apart from
/// [`Chart`] so that charts without overlays are built as before.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overlay {
    /// Dashed horizontal lines at these y values, each labelled (e.g. the latency SLO).
    pub(crate) hlines: Vec<(f64, String)>,
    /// Dashed vertical lines at these x values, each labelled (e.g. a change in the load).
    pub(crate) vlines: Vec<(f64, String)>,
    /// Points drawn as dots, not joined (e.g. where an adaptive limit settled on a sweep).
    pub(crate) markers: Vec<Line>,
}

/// Pixel size of every chart.
pub(crate) const SIZE: (u32, u32) = (640, 320);

/// A palette that tells strategies apart; the well-known names get fixed colours so every
/// chart uses the same colour for the same strategy.
pub(crate) fn color_for(name: &str, index: usize) -> RGBColor {
    match name {
        "naive" | "bare" => RGBColor(214, 39, 40),
        "fixed" => RGBColor(255, 127, 14),
        "tower" => RGBColor(148, 103, 189),
        "adaptive" | "layered" => RGBColor(44, 160, 44),
        _ => {
            const OTHERS: [RGBColor; 8] = [
                RGBColor(31, 119, 180),
                RGBColor(140, 86, 75),
                RGBColor(227, 119, 194),
                RGBColor(127, 127, 127),
                RGBColor(188, 189, 34),
                RGBColor(23, 190, 207),
                RGBColor(57, 59, 121),
                RGBColor(99, 121, 57),
            ];
            OTHERS[index % OTHERS.len()]
        }
    }
}

impl Chart {
    /// Renders the chart as an `<svg>` element (no overlay: the form other experiments'
    /// pages use).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn to_svg(&self) -> anyhow::Result<String> {
        self.to_svg_with(&Overlay::default())
    }

    /// Renders the chart with `overlay` drawn over its lines; the axes include the overlay's
    /// lines and points, so that a reference line above all the data still shows.
    pub(crate) fn to_svg_with(&self, overlay: &Overlay) -> anyhow::Result<String> {
        let refs = overlay
            .hlines
            .iter()
            .filter_map(|&(y, _)| {
                let x = self.lines.iter().flat_map(|l| l.points.first()).next()?.0;
                Some((x, y))
            })
            .collect::<Vec<_>>();
        let all = self
            .lines
            .iter()
            .chain(&overlay.markers)
            .flat_map(|l| l.points.iter())
            .chain(&refs);
        let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, f64::MIN);
        for &(x, y) in all {
            if !(x.is_finite() && y.is_finite()) {
                continue;
            }
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
        if x_min > x_max {
            (x_min, x_max, y_max) = (0.0, 1.0, 1.0);
        }
        if !self.x_pow2 {
            x_min = x_min.min(0.0);
        }
        if x_max <= x_min {
            x_max = x_min + 1.0;
        }
        let x_ticks = if self.x_pow2 {
            (x_max - x_min) as usize + 1
        } else {
            8
        };
        let x = (x_min..x_max, x_ticks);
        let mut svg = String::new();
        if self.log_y {
            // Log axes cannot show 0: clamp to a floor under the smallest positive value.
            let floor = self
                .lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.1))
                .filter(|&y| y > 0.0)
                .fold(f64::MAX, f64::min);
            let floor = if floor == f64::MAX { 1.0 } else { floor / 2.0 };
            let top = (y_max * 2.0).max(floor * 10.0);
            let lines = self.clamped(floor);
            let bounds = (x_min, x_max, floor, top);
            self.draw(
                &mut svg,
                x,
                (floor..top).log_scale(),
                &lines,
                overlay,
                bounds,
            )?;
        } else {
            // An in-chart legend sits at the top right: leave it room above the lines.
            let headroom = if self.legend { 1.4 } else { 1.08 };
            let top = if y_max <= 0.0 { 1.0 } else { y_max * headroom };
            let lines = self.clamped(f64::MIN);
            let bounds = (x_min, x_max, 0.0, top);
            self.draw(&mut svg, x, 0.0..top, &lines, overlay, bounds)?;
        }
        Ok(svg)
    }

    fn clamped(&self, floor: f64) -> Vec<Line> {
        self.lines
            .iter()
            .map(|l| Line {
                points: l
                    .points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|&(x, y)| (x, y.max(floor)))
                    .collect(),
                ..l.clone()
            })
            .collect()
    }

    fn draw<X, Y>(
        &self,
        svg: &mut String,
        (x, x_ticks): (X, usize),
        y: Y,
        lines: &[Line],
        overlay: &Overlay,
        (x_lo, x_hi, y_lo, y_hi): (f64, f64, f64, f64),
    ) -> anyhow::Result<()>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 17))
            .margin(8)
            // Room for the last x tick label, which is centred on the right edge.
            .margin_right(28)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_labels(x_ticks)
            .y_labels(6)
            .y_label_formatter(&|v| short(*v))
            .x_label_formatter(&|v| {
                if self.x_pow2 {
                    short(2f64.powf(*v).round())
                } else {
                    short(*v)
                }
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        for line in lines {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?
                .label(line.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                });
        }
        let grey = RGBColor(110, 110, 110);
        let label_style = ("sans-serif", 12).into_font().color(&grey);
        for (y, label) in &overlay.hlines {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x_lo, *y), (x_hi, *y)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (x_lo + (x_hi - x_lo) * 0.01, *y),
                    label_style.clone(),
                )))
                .map_err(plot_err)?;
        }
        for (x, label) in &overlay.vlines {
            chart
                .draw_series(DashedLineSeries::new(
                    [(*x, y_lo), (*x, y_hi)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x, y_hi),
                    label_style.clone(),
                )))
                .map_err(plot_err)?;
        }
        for marker in &overlay.markers {
            let color = marker.color;
            chart
                .draw_series(
                    marker
                        .points
                        .iter()
                        .filter(|p| p.0.is_finite() && p.1.is_finite())
                        .map(|&(x, y)| Circle::new((x, y.max(y_lo)), 5, color.filled())),
                )
                .map_err(plot_err)?
                .label(marker.name.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        if self.legend {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
        Ok(())
    }
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw chart: {e}")
}

/// Compact axis numbers: 1.5k, 20M, 0.02.
pub(crate) fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        trim(format!("{:.2}", v / 1e9)) + "G"
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e3 {
        trim(format!("{:.2}", v / 1e3)) + "k"
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_svg_with_title_and_legend() {
        let chart = Chart {
            title: "goodput".into(),
            x_label: "s".into(),
            y_label: "req/s".into(),
            log_y: true,
            x_pow2: false,
            legend: true,
            lines: vec![
                Line {
                    name: "naive".into(),
                    color: color_for("naive", 0),
                    points: vec![(0.0, 0.0), (1.0, 100.0), (2.0, 1000.0)],
                },
                Line {
                    name: "adaptive".into(),
                    color: color_for("adaptive", 1),
                    points: vec![(0.0, 5.0), (1.0, 50.0)],
                },
            ],
        };
        let svg = chart.to_svg().unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("goodput"));
        assert!(svg.contains("adaptive"));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(20_000_000.0), "20M");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(12.0), "12");
    }
}
