//! Shared plotting setup (training curves, load-test plots).
use plotters::style::FontStyle;

/// Fonts tried for labels (plotters renders text with ab_glyph from a TTF file).
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

#[derive(Debug, Clone, thiserror::Error)]
pub enum PlotError {
    #[error("no TTF font found (apt-get install fonts-dejavu-core)")]
    NoFont,
    #[error("{0}: not a font ab_glyph can parse")]
    BadFont(&'static str),
    /// plotters' error type is generic over the backend; its message is what there is to keep.
    #[error("drawing: {0}")]
    Draw(String),
    #[error("nothing to plot")]
    Empty,
}

impl PlotError {
    pub fn draw(e: impl std::fmt::Display) -> Self {
        Self::Draw(e.to_string())
    }
}

pub fn register_font() -> Result<(), PlotError> {
    static DONE: std::sync::OnceLock<Result<(), PlotError>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let (path, bytes) =
            FONTS.iter().find_map(|&p| std::fs::read(p).ok().map(|b| (p, b))).ok_or(PlotError::NoFont)?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| PlotError::BadFont(path))
    })
    .clone()
}
