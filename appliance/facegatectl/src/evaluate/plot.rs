// SPDX-License-Identifier: MIT OR Apache-2.0
//! The DET plot of an evaluation: FNMR against FMR on log axes, the measured curve, its
//! continuation by the impostor tail model, and the FMR each gallery size needs.

use std::path::Path;

use facegate_vision::open_set::{DetPoint, TailFit, fmr_needed, rates};
use plotters::prelude::*;

const SIZE: (u32, u32) = (960, 720);
const FONT: &str = "sans-serif";
/// The smallest FMR on the plot: below what a million-person gallery at FPIR 1e-4 needs.
const FMR_FLOOR: f64 = 1e-11;
/// Tail-model points drawn between the last counted FMR and the model's endpoint.
const TAIL_STEPS: usize = 200;

/// What the plot shows.
pub struct DetPlot<'a> {
    pub model: &'a str,
    /// The measured curve ([`facegate_vision::open_set::det_curve`]).
    pub measured: &'a [DetPoint],
    /// Genuine scores, ascending: the FNMR along the tail model's continuation.
    pub genuine: &'a [f32],
    pub tail: Option<&'a TailFit>,
    /// The highest threshold at which the FMR is still counted, not modelled.
    pub last_counted: f64,
    /// Gallery sizes whose needed FMR is marked, at `target_fpir`.
    pub marked_sizes: &'a [u64],
    pub target_fpir: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the DET plot {path}: {message}")]
pub struct PlotError {
    path: String,
    message: String,
}

impl DetPlot<'_> {
    /// Draws the plot into the PNG file `path`.
    pub fn draw(&self, path: &Path) -> Result<(), PlotError> {
        self.draw_png(path).map_err(|e| PlotError {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    fn draw_png(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let fnmr_floor = (0.5 / self.genuine.len().max(1) as f64).min(1e-3);
        let visible = |p: &(f64, f64)| p.0 >= FMR_FLOOR && p.1 >= fnmr_floor;
        let measured: Vec<(f64, f64)> = self
            .measured
            .iter()
            .map(|p| (p.fmr, p.fnmr))
            .filter(visible)
            .collect();
        let modelled: Vec<(f64, f64)> = self.tail_points().into_iter().filter(visible).collect();

        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("DET, {}", self.model), (FONT, 22).into_font())
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d((FMR_FLOOR..1.0).log_scale(), (fnmr_floor..1.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("FMR: share of different-person pairs that match")
            .y_desc("FNMR: share of same-person pairs that fail")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .label_style((FONT, 14))
            .draw()?;

        let blue = BLUE.stroke_width(2);
        chart
            .draw_series(LineSeries::new(measured, blue))?
            .label("measured (pairs of the corpus)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], blue));
        if !modelled.is_empty() {
            let red = RED.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(modelled, 8, 5, red))?
                .label("impostor tail model (generalized Pareto)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], red));
        }
        let green = RGBColor(0, 130, 60).stroke_width(2);
        let mut legend_given = false;
        for &n in self.marked_sizes {
            let fmr = fmr_needed(n, self.target_fpir);
            if fmr < FMR_FLOOR {
                continue;
            }
            let line =
                chart.draw_series(LineSeries::new([(fmr, fnmr_floor), (fmr, 1.0)], green))?;
            if !std::mem::replace(&mut legend_given, true) {
                line.label(format!(
                    "FMR a gallery of N people needs for FPIR {:.0e}",
                    self.target_fpir
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], green));
            }
            chart.draw_series(std::iter::once(Text::new(
                format!("N={}", thousands(n)),
                (fmr * 1.3, 0.7),
                (FONT, 14).into_font().color(&green.color),
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }

    /// (FMR, FNMR) along the tail model, from the last counted threshold to the model's end.
    fn tail_points(&self) -> Vec<(f64, f64)> {
        let Some(tail) = self.tail else {
            return Vec::new();
        };
        let start = self.last_counted.max(tail.u);
        let end = tail.endpoint.unwrap_or(1.0).min(1.0);
        if end <= start {
            return Vec::new();
        }
        (0..=TAIL_STEPS)
            .map(|i| start + (end - start) * i as f64 / TAIL_STEPS as f64)
            .map(|t| (tail.fmr(t), rates::fnmr(self.genuine, t)))
            .collect()
    }
}

/// 700000 as "700k", 1000000 as "1M".
fn thousands(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n.is_multiple_of(1_000) => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
