//! Benchmark CSVs built from the original releases, so the product does not depend on pre-built splits:
//! - Frappe (`frappe.csv`): every log row is a positive; 2 negatives per positive keep the user and context
//!   and draw an app uniformly from the apps in the log that this user did not use in that exact context
//!   (and not drawn already for the same positive). Seeded (ChaCha8), shuffled, split 7:2:1.
//! - MovieLens-100K (`u.data`, `u.user`, `u.item`, `u.genre`): rating 3 dropped, label = rating > 3;
//!   fields UserID, Gender, Age, Occupation, MovieID, Release (year), Genres (`^`-joined, first 5); split 8:1:1.
//!
//! Split sizes: train = ⌊n·r₀⌋, valid = ⌊n·r₁⌋, test = the rest (the shipped benchmark counts).
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::DataError;

/// Rows with a header: the first column is `label`.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

const FRAPPE_FIELDS: [&str; 10] =
    ["user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city"];

/// Frappe's CTR table from the original log (`dir/frappe.csv`).
pub fn frappe(dir: &Path, seed: u64) -> Result<Table, DataError> {
    let path = dir.join("frappe.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| DataError::Header {
            path: path.clone(),
            reason: format!("no column '{name}' in the header"),
        })
    };
    let cols = FRAPPE_FIELDS.iter().map(|f| col(f)).collect::<Result<Vec<_>, _>>()?;
    let mut positives = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() != header.len() {
            return Err(malformed(
                &path,
                i as u64 + 2,
                format!("expected {} columns, found {}", header.len(), cells.len()),
            ));
        }
        positives.push(cols.iter().map(|&c| cells[c].to_string()).collect::<Vec<_>>());
    }
    // Apps in first-seen order, so the draw is reproducible from the file alone.
    let mut apps: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for p in &positives {
        if seen.insert(p[1].as_str()) {
            apps.push(p[1].as_str());
        }
    }
    let context_key = |p: &[String]| -> String { [&p[0..1], &p[2..]].concat().join("\t") };
    let used: HashSet<(String, &str)> = positives.iter().map(|p| (context_key(p), p[1].as_str())).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(positives.len() * 3);
    for p in &positives {
        let key = context_key(p);
        rows.push(labelled("1", p));
        let mut drawn: Vec<&str> = Vec::with_capacity(2);
        while drawn.len() < 2 {
            let app = apps[rng.gen_range(0..apps.len())];
            if !used.contains(&(key.clone(), app)) && !drawn.contains(&app) {
                drawn.push(app);
            }
        }
        for app in drawn {
            let mut neg = p.clone();
            neg[1] = app.to_string();
            rows.push(labelled("0", &neg));
        }
    }
    rows.shuffle(&mut rng);
    Ok(Table { header: header_with_label(&FRAPPE_FIELDS), rows })
}

/// The benchmark keeps a movie's first 5 genres (in u.genre order); a handful of movies have 6.
const ML_MAX_GENRES: usize = 5;
const ML_FIELDS: [&str; 7] = ["UserID", "Gender", "Age", "Occupation", "MovieID", "Release", "Genres"];

/// MovieLens-100K's CTR table (KDEF's ML recipe).
pub fn movielens_100k(dir: &Path, seed: u64) -> Result<Table, DataError> {
    let read = |name: &str| -> Result<(PathBuf, String), DataError> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        // u.item is Latin-1; only ids, dates and flags are used, all ASCII.
        Ok((path, String::from_utf8_lossy(&bytes).into_owned()))
    };
    let (genre_path, genres_text) = read("u.genre")?;
    let genres: Vec<&str> = genres_text.lines().filter_map(|l| l.split('|').next()).filter(|g| !g.is_empty()).collect();
    if genres.len() != 19 {
        return Err(malformed(&genre_path, 0, format!("expected 19 genres, found {}", genres.len())));
    }
    let (user_path, users_text) = read("u.user")?;
    let mut users = std::collections::HashMap::new();
    for (i, line) in users_text.lines().enumerate() {
        let c: Vec<&str> = line.split('|').collect();
        if c.len() != 5 {
            return Err(malformed(&user_path, i as u64 + 1, format!("expected 5 '|' columns, found {}", c.len())));
        }
        users.insert(c[0].to_string(), (c[2].to_string(), c[1].to_string(), c[3].to_string()));
    }
    let (item_path, items_text) = read("u.item")?;
    let mut items = std::collections::HashMap::new();
    for (i, line) in items_text.lines().enumerate() {
        let c: Vec<&str> = line.split('|').collect();
        if c.len() != 24 {
            return Err(malformed(&item_path, i as u64 + 1, format!("expected 24 '|' columns, found {}", c.len())));
        }
        let year = c[2].rsplit('-').next().unwrap_or("").to_string();
        let flagged = c[5..].iter().zip(&genres).filter(|(f, _)| **f == "1").map(|(_, g)| *g);
        let tags: Vec<&str> = flagged.take(ML_MAX_GENRES).collect();
        items.insert(c[0].to_string(), (year, tags.join("^")));
    }
    let (data_path, data_text) = read("u.data")?;
    let mut rows = Vec::new();
    for (i, line) in data_text.lines().enumerate() {
        let c: Vec<&str> = line.split('\t').collect();
        let bad = |r: String| malformed(&data_path, i as u64 + 1, r);
        if c.len() != 4 {
            return Err(bad(format!("expected 4 tab-separated columns, found {}", c.len())));
        }
        let rating: u8 = c[2].parse().map_err(|_| bad(format!("rating '{}' is not an integer", c[2])))?;
        if rating == 3 {
            continue;
        }
        let (gender, age, occupation) = users.get(c[0]).ok_or_else(|| bad(format!("unknown user {}", c[0])))?;
        let (year, tags) = items.get(c[1]).ok_or_else(|| bad(format!("unknown movie {}", c[1])))?;
        let label = if rating > 3 { "1" } else { "0" };
        let cells = [c[0], gender, age, occupation, c[1], year, tags];
        rows.push(std::iter::once(label).chain(cells).map(str::to_string).collect());
    }
    rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Ok(Table { header: header_with_label(&ML_FIELDS), rows })
}

/// Splits sizes for `n` rows: ⌊n·r₀⌋, ⌊n·r₁⌋, the rest.
pub fn split_sizes(n: usize, ratios: [f64; 3]) -> [usize; 3] {
    let train = (n as f64 * ratios[0]).floor() as usize;
    let valid = ((n as f64 * ratios[1]).floor() as usize).min(n - train);
    [train, valid, n - train - valid]
}

/// Writes `train.csv`, `valid.csv`, `test.csv` into `out` (replaced atomically as a whole directory).
pub fn write_splits(table: &Table, ratios: [f64; 3], out: &Path) -> Result<[usize; 3], DataError> {
    let sizes = split_sizes(table.rows.len(), ratios);
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let tmp = tempfile::Builder::new().prefix(".splits-").tempdir_in(parent).map_err(|e| DataError::io(parent, e))?;
    let mut start = 0;
    for (name, size) in ["train", "valid", "test"].iter().zip(sizes) {
        let path = tmp.path().join(format!("{name}.csv"));
        let mut w = csv::Writer::from_path(&path).map_err(|e| DataError::io(&path, e.into()))?;
        let io = |e: csv::Error| DataError::io(&path, e.into());
        w.write_record(&table.header).map_err(io)?;
        for row in &table.rows[start..start + size] {
            w.write_record(row).map_err(io)?;
        }
        w.flush().map_err(|e| DataError::io(&path, e))?;
        start += size;
    }
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| DataError::io(out, e))?;
    }
    std::fs::rename(tmp.keep(), out).map_err(|e| DataError::io(out, e))?;
    Ok(sizes)
}

fn labelled(label: &str, cells: &[String]) -> Vec<String> {
    std::iter::once(label.to_string()).chain(cells.iter().cloned()).collect()
}

fn header_with_label(fields: &[&str]) -> Vec<String> {
    std::iter::once("label").chain(fields.iter().copied()).map(str::to_string).collect()
}

fn malformed(path: &Path, line: u64, reason: String) -> DataError {
    DataError::Malformed { path: path.to_path_buf(), line, reason }
}
