//! The credentials table: columns, filters, search, sort, and the three outputs
//! (aligned text, RFC 4180 CSV, JSON). Pure code over rows of strings.

use std::fmt::Write as _;
use std::str::FromStr;

use crate::model::credential::CredentialType;

/// A column of the credentials table, in the seeds' default order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Credential,
    Description,
    Type,
    Status,
    Scope,
    KubernetesName,
    Environments,
    DataSources,
    CreatedBy,
    CreationTime,
    Cluster,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Credential,
        Column::Description,
        Column::Type,
        Column::Status,
        Column::Scope,
        Column::KubernetesName,
        Column::Environments,
        Column::DataSources,
        Column::CreatedBy,
        Column::CreationTime,
        Column::Cluster,
    ];

    /// The header, as the seeds name the column.
    pub fn header(self) -> &'static str {
        match self {
            Column::Credential => "Credential",
            Column::Description => "Description",
            Column::Type => "Type",
            Column::Status => "Status",
            Column::Scope => "Scope",
            Column::KubernetesName => "Kubernetes name",
            Column::Environments => "Environment(s)",
            Column::DataSources => "Data source(s)",
            Column::CreatedBy => "Created by",
            Column::CreationTime => "Creation time",
            Column::Cluster => "Cluster",
        }
    }

    /// The name used on the command line and as the JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Column::Credential => "credential",
            Column::Description => "description",
            Column::Type => "type",
            Column::Status => "status",
            Column::Scope => "scope",
            Column::KubernetesName => "kubernetes-name",
            Column::Environments => "environments",
            Column::DataSources => "data-sources",
            Column::CreatedBy => "created-by",
            Column::CreationTime => "creation-time",
            Column::Cluster => "cluster",
        }
    }

    fn position(self) -> usize {
        Column::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Bad table arguments; each message lists what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("unknown column {0:?}: use one of {columns}", columns = column_keys())]
    UnknownColumn(String),
    #[error(
        "--filter {0:?} is not COLUMN=VALUE (VALUE may use * and ? globs), e.g. --filter type=docker-registry"
    )]
    BadFilter(String),
    #[error("--filter {given:?}: {problem}")]
    BadGlob { given: String, problem: String },
    #[error(
        "--sort {0:?} is not COLUMN or COLUMN:asc or COLUMN:desc, e.g. --sort creation-time:desc"
    )]
    BadSort(String),
    #[error("--columns is empty: name at least one of {columns}", columns = column_keys())]
    NoColumns,
}

fn column_keys() -> String {
    Column::ALL
        .iter()
        .map(|c| c.key())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Column {
    type Err = TableError;

    /// Accepts the key (`kubernetes-name`), the header (`Kubernetes name`) or
    /// either with `_`/space/`-` and case ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = |x: &str| {
            x.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        };
        let wanted = norm(s);
        Column::ALL
            .into_iter()
            .find(|c| {
                norm(c.key()) == wanted
                    || norm(c.header()) == wanted
                    || (wanted == "name" && *c == Column::Credential)
                    || (wanted == "credentials" && *c == Column::Credential)
            })
            .ok_or_else(|| TableError::UnknownColumn(s.to_owned()))
    }
}

/// `--columns a,b,c`.
pub fn parse_columns(spec: &str) -> Result<Vec<Column>, TableError> {
    let columns = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if columns.is_empty() {
        return Err(TableError::NoColumns);
    }
    Ok(columns)
}

/// One row: a cell per column, in [`Column::ALL`] order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row(pub [String; 11]);

impl Row {
    pub fn get(&self, column: Column) -> &str {
        &self.0[column.position()]
    }

    pub fn set(&mut self, column: Column, value: impl Into<String>) {
        self.0[column.position()] = value.into();
    }
}

/// `--filter column=value`: exact, or a glob when the value has `*`, `?` or `[`.
#[derive(Clone, Debug)]
pub struct Filter {
    pub column: Column,
    pattern: glob::Pattern,
}

impl FromStr for Filter {
    type Err = TableError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (column, value) = s
            .split_once('=')
            .ok_or_else(|| TableError::BadFilter(s.to_owned()))?;
        if column.trim().is_empty() {
            return Err(TableError::BadFilter(s.to_owned()));
        }
        let column = column.trim().parse()?;
        let pattern = glob::Pattern::new(value).map_err(|e| TableError::BadGlob {
            given: s.to_owned(),
            problem: e.msg.to_owned(),
        })?;
        Ok(Filter { column, pattern })
    }
}

impl Filter {
    /// The cell matches as stored (the stable key) or as the table shows it
    /// (`--filter type=access-key` and `--filter "type=Access key"` agree).
    pub fn matches(&self, row: &Row) -> bool {
        let cell = row.get(self.column);
        self.pattern.matches(cell) || self.pattern.matches(&shown(self.column, cell))
    }
}

/// A cell as `-o table` shows it: the *Type* column in the seeds' words
/// (`Docker registry`, `Access key`, `Username & password`, `Generic`); CSV
/// and JSON keep the stable keys.
pub fn shown(column: Column, cell: &str) -> std::borrow::Cow<'_, str> {
    match (column, cell.parse::<CredentialType>()) {
        (Column::Type, Ok(kind)) => std::borrow::Cow::Borrowed(kind.display_name()),
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

/// `--sort column[:asc|:desc]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub column: Column,
    pub descending: bool,
}

impl FromStr for Sort {
    type Err = TableError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (column, order) = match s.rsplit_once(':') {
            Some((c, o)) => (c, Some(o)),
            None => (s, None),
        };
        let descending = match order.map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(TableError::BadSort(s.to_owned())),
        };
        let column = column.parse().map_err(|e| match e {
            TableError::UnknownColumn(_) if column.is_empty() => TableError::BadSort(s.to_owned()),
            e => e,
        })?;
        Ok(Sort { column, descending })
    }
}

/// What rows to show, in what order.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub filters: Vec<Filter>,
    /// Case-insensitive substring of any column.
    pub search: Option<String>,
    pub sort: Option<Sort>,
}

impl Query {
    /// Rows that pass every filter and the search, stably sorted
    /// (rows that compare equal keep their input order).
    pub fn apply(&self, rows: Vec<Row>) -> Vec<Row> {
        let needle = self.search.as_ref().map(|s| s.to_lowercase());
        let mut rows: Vec<Row> = rows
            .into_iter()
            .filter(|r| self.filters.iter().all(|f| f.matches(r)))
            .filter(|r| match &needle {
                None => true,
                Some(n) => Column::ALL.iter().any(|c| {
                    let cell = r.get(*c);
                    cell.to_lowercase().contains(n) || shown(*c, cell).to_lowercase().contains(n)
                }),
            })
            .collect();
        if let Some(sort) = self.sort {
            rows.sort_by(|a, b| {
                let order = a.get(sort.column).cmp(b.get(sort.column));
                if sort.descending {
                    order.reverse()
                } else {
                    order
                }
            });
        }
        rows
    }
}

/// RFC 4180 CSV with a header row and exactly `columns`.
///
/// Unless `raw`, a cell that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return gets a leading `'`, so a spreadsheet shows it as text
/// instead of running it as a formula (OWASP's advice on CSV injection).
/// On a `terminal`, every cell is also made [`printable`], as in a table: CSV
/// quoting protects a file, not the terminal that shows it.
pub fn csv(rows: &[Row], columns: &[Column], raw: bool, terminal: bool) -> String {
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = out.write_record(columns.iter().map(|c| c.header()));
    for row in rows {
        let _ = out.write_record(columns.iter().map(|c| {
            let cell = row.get(*c);
            let cell = if raw {
                std::borrow::Cow::Borrowed(cell)
            } else {
                spreadsheet_safe(cell)
            };
            match terminal {
                true => printable(&cell).into_owned().into_bytes(),
                false => cell.into_owned().into_bytes(),
            }
        }));
    }
    let bytes = out.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// `cell`, with a leading `'` when a spreadsheet would read it as a formula.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => std::borrow::Cow::Owned(format!("'{cell}")),
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

/// `s` safe to print on a terminal: tabs and line breaks become spaces, and
/// every other control character (escape sequences, C1 codes), bidi control,
/// line or paragraph separator and invisible character is written as
/// `\u{..}`, so a description cannot move the cursor, change colours, retitle
/// the window, reorder what the admin reads or hide text.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c,
                // Bidi embeddings, overrides and isolates; LRM, RLM and ALM.
                '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                // Line and paragraph separators.
                | '\u{2028}' | '\u{2029}'
                // Zero-width space, joiners, word joiner and invisible operators, BOM, soft hyphen.
                | '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{ad}')
    };
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A JSON array of objects keyed by [`Column::key`].
pub fn json(rows: &[Row], columns: &[Column]) -> String {
    let array: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::Value::Object(
                columns
                    .iter()
                    .map(|c| (c.key().to_owned(), row.get(*c).into()))
                    .collect(),
            )
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&array).unwrap_or_default();
    s.push('\n');
    s
}

/// The table as aligned text; see [`aligned`].
pub fn text(rows: &[Row], columns: &[Column], width: Option<usize>) -> String {
    let header: Vec<String> = columns.iter().map(|c| c.header().to_uppercase()).collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| shown(*c, r.get(*c)).into_owned())
                .collect()
        })
        .collect();
    aligned(&header, &body, width)
}

/// Aligned columns separated by two spaces. With a `width`, the widest
/// columns are cut (with `…`) until a line fits, but never below 6 characters.
pub fn aligned(header: &[&str], rows: &[Vec<String>], width: Option<usize>) -> String {
    const GAP: usize = 2;
    const MIN: usize = 6;
    let cell = |s: &str| printable(s).into_owned();
    let header: Vec<String> = header.iter().map(|h| cell(h)).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cell(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for line in &body {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    if let Some(limit) = width {
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        while total(&widths) > limit {
            let Some((i, widest)) = widths.iter().copied().enumerate().max_by_key(|(_, w)| *w)
            else {
                break;
            };
            if widest <= MIN {
                break;
            }
            widths[i] = widest - 1;
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&body) {
        let last = line.len().saturating_sub(1);
        for (i, (c, w)) in line.iter().zip(&widths).enumerate() {
            let c = fit(c, *w);
            if i == last {
                out.push_str(&c);
            } else {
                let _ = write!(out, "{c:<w$}{:GAP$}", "", w = *w);
            }
        }
        out.push('\n');
    }
    out
}

fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_output_escapes_control_characters() {
        let evil = "ok\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{9b}2J\nnext\u{202e}txt";
        let shown = printable(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(
            shown,
            "ok\\u{1b}]0;pwned\\u{7}\\u{1b}[31mred\\u{9b}2J next\\u{202e}txt"
        );
        assert_eq!(printable("plain café"), "plain café");
        // Invisible and reordering characters are shown, not applied.
        for hidden in [
            '\u{200b}', '\u{200e}', '\u{061c}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{2060}',
        ] {
            let shown = printable(&format!("a{hidden}b")).into_owned();
            assert_eq!(shown, format!("a\\u{{{:x}}}b", u32::from(hidden)));
        }
        // CSV on a terminal is escaped too; to a file, only quoted.
        let mut row = Row::default();
        row.set(Column::Description, evil);
        let on_terminal = csv(
            std::slice::from_ref(&row),
            &[Column::Description],
            true,
            true,
        );
        assert!(!on_terminal.contains('\u{1b}'), "{on_terminal:?}");
        let to_file = csv(
            std::slice::from_ref(&row),
            &[Column::Description],
            true,
            false,
        );
        assert!(to_file.contains('\u{1b}'), "{to_file:?}");
        let table = aligned(&["A"], &[vec![evil.to_owned()]], None);
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{9b}'),
            "{table:?}"
        );
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_prefixed() {
        let mut row = Row::default();
        row.set(Column::Credential, "=HYPERLINK(\"http://x\")");
        row.set(Column::Description, "-2+3");
        row.set(Column::Type, "generic");
        let columns = [Column::Credential, Column::Description, Column::Type];
        let safe = csv(std::slice::from_ref(&row), &columns, false, false);
        assert!(safe.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{safe}");
        assert!(safe.contains(",'-2+3,"), "{safe}");
        assert!(safe.contains(",generic\r\n"), "{safe}");
        for lead in ["+", "@", "\t", "\r"] {
            assert!(
                spreadsheet_safe(&format!("{lead}x")).starts_with('\''),
                "{lead:?}"
            );
        }
        let raw = csv(std::slice::from_ref(&row), &columns, true, false);
        assert!(
            raw.contains("\"=HYPERLINK("),
            "--raw-csv leaves cells as they are: {raw}"
        );
    }

    fn row(name: &str, kind: &str, description: &str) -> Row {
        let mut r = Row::default();
        r.set(Column::Credential, name);
        r.set(Column::Type, kind);
        r.set(Column::Description, description);
        r
    }

    #[test]
    fn columns_parse_by_key_or_header() {
        assert_eq!(
            parse_columns("credential, Kubernetes name,data_sources,Environment(s)").unwrap(),
            [
                Column::Credential,
                Column::KubernetesName,
                Column::DataSources,
                Column::Environments
            ]
        );
        let err = parse_columns("credential,colour").unwrap_err();
        assert_eq!(err, TableError::UnknownColumn("colour".into()));
        assert!(err.to_string().contains("kubernetes-name"), "{err}");
        assert_eq!(parse_columns(" , ").unwrap_err(), TableError::NoColumns);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let rows = [
            row("plain", "generic", "no special characters"),
            row("comma", "password", "a, b"),
            row("quote", "password", "say \"hi\""),
            row("newline", "access-key", "line 1\nline 2"),
        ];
        let out = csv(
            &rows,
            &[Column::Credential, Column::Description],
            false,
            false,
        );
        assert_eq!(
            out,
            "Credential,Description\r\nplain,no special characters\r\ncomma,\"a, b\"\r\n\
             quote,\"say \"\"hi\"\"\"\r\nnewline,\"line 1\nline 2\"\r\n"
        );
        // And it reads back to the same cells.
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        let back: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        let expected: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.get(Column::Credential).to_owned(),
                    r.get(Column::Description).to_owned(),
                ]
            })
            .collect();
        assert_eq!(back, expected);
    }

    #[test]
    fn csv_and_json_hold_exactly_the_selected_columns_in_order() {
        let rows = [row("a", "generic", "d")];
        let out = csv(&rows, &[Column::Type, Column::Credential], false, false);
        assert_eq!(out, "Type,Credential\r\ngeneric,a\r\n");
        let value: serde_json::Value = serde_json::from_str(&json(&rows, &[Column::Type])).unwrap();
        assert_eq!(value, serde_json::json!([{"type": "generic"}]));
    }

    #[test]
    fn sort_is_stable_and_descending_reverses() {
        let rows = vec![
            row("b", "generic", "1"),
            row("a", "password", "2"),
            row("c", "generic", "3"),
            row("d", "password", "4"),
        ];
        let by_type = Query {
            sort: Some("type".parse().unwrap()),
            ..Query::default()
        };
        let names = |rows: Vec<Row>| {
            rows.iter()
                .map(|r| r.get(Column::Credential).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(by_type.apply(rows.clone())), ["b", "c", "a", "d"]);
        let desc = Query {
            sort: Some("type:desc".parse().unwrap()),
            ..Query::default()
        };
        // Equal rows keep their input order in both directions.
        assert_eq!(names(desc.apply(rows.clone())), ["a", "d", "b", "c"]);
        assert!(matches!(
            "type:sideways".parse::<Sort>(),
            Err(TableError::BadSort(_))
        ));
    }

    #[test]
    fn filters_are_exact_or_glob_and_search_ignores_case() {
        let rows = vec![
            row("registry-a", "docker-registry", "Team A pulls"),
            row("registry-b", "docker-registry", "team b"),
            row("s3", "access-key", "bucket"),
        ];
        let q = |filters: &[&str], search: Option<&str>| {
            Query {
                filters: filters.iter().map(|f| f.parse().unwrap()).collect(),
                search: search.map(Into::into),
                sort: None,
            }
            .apply(rows.clone())
            .iter()
            .map(|r| r.get(Column::Credential).to_owned())
            .collect::<Vec<_>>()
        };
        assert_eq!(q(&["type=access-key"], None), ["s3"]);
        // The seeds' names filter too (issue 17).
        assert_eq!(q(&["type=Access key"], None), ["s3"]);
        assert_eq!(q(&["type=Docker*"], None), ["registry-a", "registry-b"]);
        assert_eq!(q(&[], Some("username &")), Vec::<String>::new());
        assert_eq!(q(&[], Some("access KEY")), ["s3"]);
        assert_eq!(q(&["type=docker"], None), Vec::<String>::new());
        assert_eq!(
            q(&["credential=registry-*"], None),
            ["registry-a", "registry-b"]
        );
        assert_eq!(
            q(&["type=docker-registry", "credential=*-b"], None),
            ["registry-b"]
        );
        assert_eq!(q(&[], Some("TEAM")), ["registry-a", "registry-b"]);
        assert!(matches!(
            "type".parse::<Filter>(),
            Err(TableError::BadFilter(_))
        ));
        assert!(matches!(
            "=x".parse::<Filter>(),
            Err(TableError::BadFilter(_))
        ));
        assert!(matches!(
            "colour=red".parse::<Filter>(),
            Err(TableError::UnknownColumn(_))
        ));
        assert!(matches!(
            "type=[".parse::<Filter>(),
            Err(TableError::BadGlob { .. })
        ));
    }

    #[test]
    fn text_aligns_and_fits_the_width() {
        let rows = [
            row("a", "generic", "short"),
            row("longer-name", "docker-registry", &"x".repeat(80)),
        ];
        let cols = [Column::Credential, Column::Type, Column::Description];
        let wide = text(&rows, &cols, None);
        let lines: Vec<&str> = wide.lines().collect();
        assert_eq!(
            lines[0],
            format!("CREDENTIAL   TYPE             DESCRIPTION")
        );
        // The table shows the seeds' type names; CSV and JSON keep the keys.
        assert!(lines[1].starts_with("a            Generic "), "{wide}");
        assert!(lines[2].starts_with("longer-name  Docker registry  "));
        assert!(csv(&rows, &cols, false, false).contains(",docker-registry,"));
        assert!(json(&rows, &cols).contains("\"docker-registry\""));
        assert!(lines[2].ends_with(&"x".repeat(80)));
        let narrow = text(&rows, &cols, Some(50));
        for line in narrow.lines() {
            assert!(line.chars().count() <= 50, "{line:?}");
        }
        assert!(narrow.contains('…'));
        assert!(narrow.lines().nth(2).unwrap().starts_with("longer-name  "));
    }
}
